// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Deployment, constants, categories, providers.
contract ConsentLedgerAdminTest is LedgerFixture {
    // ------------------------------------------------------------ deployment and constants

    function test_Constructor() public view {
        vm.assertTrue(ledger.hasRole(DEFAULT_ADMIN_ROLE, admin));
        vm.assertEq(ledger.categoryCount(), 4);
        vm.assertEq(ledger.categoryId(0), bytes32(0));
        vm.assertEq(ledger.categoryId(1), LABORATORY);
        vm.assertEq(ledger.categoryId(2), IMAGING);
        vm.assertEq(ledger.categoryId(3), MEDICATION);
        vm.assertEq(ledger.categoryId(4), CLINICAL_NOTE);
        vm.assertEq(ledger.categoryId(5), bytes32(0));
        (bytes32 root, uint64 size) = ledger.disclosureBatchHead();
        vm.assertEq(root, bytes32(0));
        vm.assertEq(size, 0);
    }

    function test_Constructor_EmitsCategoryRegistered() public {
        vm.expectEmit(true, true, true, true);
        emit IConsentLedger.CategoryRegistered(LABORATORY, 1, "laboratory");
        vm.expectEmit(true, true, true, true);
        emit IConsentLedger.CategoryRegistered(IMAGING, 2, "imaging");
        vm.expectEmit(true, true, true, true);
        emit IConsentLedger.CategoryRegistered(MEDICATION, 3, "medication");
        vm.expectEmit(true, true, true, true);
        emit IConsentLedger.CategoryRegistered(CLINICAL_NOTE, 4, "clinical-note");
        new ConsentLedger(admin);
    }

    function test_RevertWhen_AdminIsZero() public {
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        new ConsentLedger(address(0));
    }

    function test_RoleConstants() public view {
        vm.assertEq(ledger.PROVIDER_ROLE(), keccak256("PROVIDER_ROLE"));
        vm.assertEq(ledger.AUDITOR_ROLE(), keccak256("AUDITOR_ROLE"));
        vm.assertEq(ledger.CUSTODIAN_ROLE(), keccak256("CUSTODIAN_ROLE"));
        vm.assertEq(ledger.EMERGENCY_ROLE(), keccak256("EMERGENCY_ROLE"));
        vm.assertEq(ledger.DEFAULT_ADMIN_ROLE(), bytes32(0));
    }

    function test_PurposeConstants() public view {
        vm.assertEq(ledger.TREAT(), TREAT);
        vm.assertEq(ledger.HPAYMT(), HPAYMT);
        vm.assertEq(ledger.HOPERAT(), HOPERAT);
        vm.assertEq(ledger.HRESCH(), HRESCH);
        vm.assertEq(ledger.PATRQT(), PATRQT);
        vm.assertEq(ledger.PUBHLTH(), PUBHLTH);
        vm.assertEq(ledger.ETREAT(), ETREAT);
        // ASCII left-aligned, zero-padded
        vm.assertEq(ledger.TREAT(), bytes32(uint256(0x5452454154) << 216));
    }

    function test_SupportsInterface() public view {
        vm.assertTrue(ledger.supportsInterface(type(IConsentLedger).interfaceId));
        vm.assertTrue(ledger.supportsInterface(type(IAccessControl).interfaceId));
        vm.assertTrue(ledger.supportsInterface(type(IERC165).interfaceId));
        vm.assertFalse(ledger.supportsInterface(0xffffffff));
    }

    // ------------------------------------------------------------ registerCategory

    function test_RegisterCategory() public {
        bytes32 id = keccak256("genomics");
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.CategoryRegistered(id, 5, "genomics");
        vm.prank(admin);
        vm.assertEq(ledger.registerCategory("genomics"), id);
        vm.assertEq(ledger.categoryCount(), 5);
        vm.assertEq(ledger.categoryId(5), id);
        // usable for records
        vm.prank(provider);
        ledger.anchorRecord(patient, id, "s", CID, COMMITMENT);
    }

    function test_RevertWhen_CategoryCodeIsEmpty() public {
        vm.prank(admin);
        vm.expectRevert(IConsentLedger.EmptyCategoryCode.selector);
        ledger.registerCategory("");
    }

    function test_RevertWhen_CategoryIsRegistered() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.CategoryAlreadyRegistered.selector, IMAGING));
        ledger.registerCategory("imaging");
    }

    function test_RevertWhen_RegisterCategoryCallerIsNotAdmin() public {
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, provider, DEFAULT_ADMIN_ROLE
            )
        );
        ledger.registerCategory("genomics");
    }

    // ------------------------------------------------------------ onboardProvider

    function test_OnboardProvider() public {
        address p = vm.addr(0xD3);
        vm.assertFalse(ledger.isActiveProvider(p));
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IAccessControl.RoleGranted(PROVIDER_ROLE, p, admin);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ProviderOnboarded(p, "Pharmacy");
        vm.prank(admin);
        ledger.onboardProvider(p, "Pharmacy");
        vm.assertTrue(ledger.hasRole(PROVIDER_ROLE, p));
        vm.assertTrue(ledger.isActiveProvider(p));
        vm.assertFalse(ledger.isSuspended(p));
        vm.assertEq(ledger.providerName(p), "Pharmacy");
    }

    function test_OnboardProvider_AgainRenames() public {
        vm.prank(admin);
        ledger.onboardProvider(provider, "General Hospital North");
        vm.assertEq(ledger.providerName(provider), "General Hospital North");
        vm.assertTrue(ledger.isActiveProvider(provider));
    }

    function test_OnboardProvider_KeepsSuspension() public {
        vm.startPrank(admin);
        ledger.suspendProvider(provider);
        ledger.onboardProvider(provider, "General Hospital");
        vm.stopPrank();
        vm.assertFalse(ledger.isActiveProvider(provider));
        vm.assertTrue(ledger.isSuspended(provider));
    }

    function test_RevertWhen_OnboardProviderIsZero() public {
        vm.prank(admin);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.onboardProvider(address(0), "nobody");
    }

    function test_RevertWhen_OnboardProviderCallerIsNotAdmin() public {
        vm.prank(custodian);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, custodian, DEFAULT_ADMIN_ROLE
            )
        );
        ledger.onboardProvider(stranger, "x");
    }

    function test_ProviderRoleViaGrantRoleIsActive() public {
        vm.prank(admin);
        ledger.grantRole(PROVIDER_ROLE, stranger);
        vm.assertTrue(ledger.isActiveProvider(stranger));
        vm.assertEq(ledger.providerName(stranger), "");
    }

    function test_RevokedProviderRoleIsInactive() public {
        vm.prank(admin);
        ledger.revokeRole(PROVIDER_ROLE, provider);
        vm.assertFalse(ledger.isActiveProvider(provider));
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, provider));
        ledger.anchorRecord(patient, LABORATORY, "s", CID, COMMITMENT);
    }

    function test_RenouncedProviderRoleIsInactive() public {
        vm.prank(provider);
        ledger.renounceRole(PROVIDER_ROLE, provider);
        vm.assertFalse(ledger.isActiveProvider(provider));
        vm.prank(admin);
        ledger.grantRole(PROVIDER_ROLE, provider);
        vm.assertTrue(ledger.isActiveProvider(provider));
    }

    function test_OtherRolesDoNotMakeAProvider() public {
        vm.startPrank(admin);
        ledger.grantRole(EMERGENCY_ROLE, stranger);
        ledger.grantRole(CUSTODIAN_ROLE, stranger);
        ledger.grantRole(AUDITOR_ROLE, stranger);
        vm.stopPrank();
        vm.assertFalse(ledger.isActiveProvider(stranger));
    }

    /// @dev EMERGENCY_ROLE is mirrored into the provider flags like PROVIDER_ROLE: granting, revoking and
    /// renouncing it take effect on break-glass logging at once, and suspension does not drop it.
    function test_EmergencyRoleMirror() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory notEmergency = abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, provider2);
        vm.expectRevert(notEmergency);
        ledger.logEmergencyAccessBySig(q, _signEmergency(PROVIDER2_PK, q));

        vm.prank(admin);
        ledger.grantRole(EMERGENCY_ROLE, provider2);
        ledger.logEmergencyAccessBySig(q, _signEmergency(PROVIDER2_PK, q));

        vm.prank(admin);
        ledger.suspendProvider(provider2);
        q = _emergencyMsg(patient, provider2, recordId, 1);
        vm.expectRevert(notEmergency);
        ledger.logEmergencyAccessBySig(q, _signEmergency(PROVIDER2_PK, q));
        vm.prank(admin);
        ledger.reinstateProvider(provider2);
        ledger.logEmergencyAccessBySig(q, _signEmergency(PROVIDER2_PK, q));

        vm.prank(provider2);
        ledger.renounceRole(EMERGENCY_ROLE, provider2);
        q = _emergencyMsg(patient, provider2, recordId, 1);
        vm.expectRevert(notEmergency);
        ledger.logEmergencyAccessBySig(q, _signEmergency(PROVIDER2_PK, q));
        vm.assertTrue(ledger.isActiveProvider(provider2), "still a provider");
    }

    /// @dev The operator's roles (admin, custodian) give no way to act in a patient's or a provider's name: every
    /// direct entry point refuses them, and the custodian's one power is anchoring a disclosure batch root.
    function test_RevertWhen_OperatorActsForOthers() public {
        bytes32 recordId = _anchor(patient, "salt");
        bytes32 consentId = _grant(patient, provider, 0, TREAT);
        bytes32 head = _head(patient, recordId);
        address[2] memory operators = [admin, custodian];
        for (uint256 i; i < operators.length; ++i) {
            address op = operators[i];
            vm.startPrank(op);
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, op));
            ledger.grantConsent(patient, provider, 0, HPAYMT, 0, 0);
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, op));
            ledger.revokeConsent(consentId);
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, op));
            ledger.eraseRecord(patient, recordId);
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, op));
            ledger.anchorRecord(patient, LABORATORY, "op", CID, COMMITMENT);
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotRecordAuthor.selector, recordId, op));
            ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, delegate));
            ledger.revokeDelegate(delegate); // acts for the caller only
            vm.stopPrank();
        }
        vm.prank(custodian);
        ledger.anchorDisclosureBatch(keccak256("root"), 0, 1);
        vm.assertFalse(ledger.consent(consentId).revoked);
        vm.assertEq(_head(patient, recordId), head);
    }

    // ------------------------------------------------------------ suspendProvider / reinstateProvider

    function test_SuspendProvider() public {
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ProviderSuspended(provider, admin);
        vm.prank(admin);
        ledger.suspendProvider(provider);
        vm.assertTrue(ledger.isSuspended(provider));
        vm.assertFalse(ledger.isActiveProvider(provider));
        vm.assertTrue(ledger.hasRole(PROVIDER_ROLE, provider));
    }

    function test_ReinstateProvider() public {
        vm.prank(admin);
        ledger.suspendProvider(provider);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ProviderReinstated(provider, admin);
        vm.prank(admin);
        ledger.reinstateProvider(provider);
        vm.assertFalse(ledger.isSuspended(provider));
        vm.assertTrue(ledger.isActiveProvider(provider));
    }

    function test_SuspendedProviderRoleRevokedThenGrantedStaysSuspended() public {
        vm.startPrank(admin);
        ledger.suspendProvider(provider);
        ledger.revokeRole(PROVIDER_ROLE, provider);
        ledger.grantRole(PROVIDER_ROLE, provider);
        vm.stopPrank();
        vm.assertFalse(ledger.isActiveProvider(provider));
        vm.prank(admin);
        ledger.reinstateProvider(provider);
        vm.assertTrue(ledger.isActiveProvider(provider));
    }

    function test_RevertWhen_ProviderIsAlreadySuspended() public {
        vm.startPrank(admin);
        ledger.suspendProvider(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.AlreadySuspended.selector, provider));
        ledger.suspendProvider(provider);
        vm.stopPrank();
    }

    function test_RevertWhen_ProviderIsNotSuspended() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotSuspended.selector, provider));
        ledger.reinstateProvider(provider);
    }

    function test_RevertWhen_SuspendCallerIsNotAdmin() public {
        vm.prank(provider2);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, provider2, DEFAULT_ADMIN_ROLE
            )
        );
        ledger.suspendProvider(provider);
    }

    function test_RevertWhen_ReinstateCallerIsNotAdmin() public {
        vm.prank(admin);
        ledger.suspendProvider(provider);
        vm.prank(provider);
        vm.expectRevert(
            abi.encodeWithSelector(
                IAccessControl.AccessControlUnauthorizedAccount.selector, provider, DEFAULT_ADMIN_ROLE
            )
        );
        ledger.reinstateProvider(provider);
    }
}
