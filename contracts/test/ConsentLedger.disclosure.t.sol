// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Authorization (isAuthorized/authorizingConsent), access and emergency logging, disclosure batches.
contract ConsentLedgerDisclosureTest is LedgerFixture {
    bytes32 internal recordId; // a laboratory record of `patient` by `provider`
    bytes32 internal constant REASON = keccak256("unconscious patient, ER admission 4711");

    function setUp() public override {
        super.setUp();
        recordId = _anchor(patient, "salt");
        vm.startPrank(admin);
        ledger.grantRole(EMERGENCY_ROLE, provider2);
        vm.stopPrank();
    }

    function _assertAuthorized(bytes32 expected) internal view {
        vm.assertEq(ledger.authorizingConsent(patient, provider2, recordId, TREAT), expected);
        vm.assertEq(ledger.isAuthorized(patient, provider2, recordId, TREAT), expected != 0);
    }

    // ------------------------------------------------------------ isAuthorized / authorizingConsent

    function test_IsAuthorized_NoConsent() public view {
        _assertAuthorized(0);
    }

    function test_IsAuthorized_RecordScope() public {
        _assertAuthorized(0);
        _assertAuthorized(_grant(patient, provider2, recordId, TREAT));
    }

    function test_IsAuthorized_CategoryScope() public {
        _assertAuthorized(_grant(patient, provider2, LABORATORY, TREAT));
    }

    function test_IsAuthorized_AllRecordsScope() public {
        _assertAuthorized(_grant(patient, provider2, 0, TREAT));
    }

    function test_IsAuthorized_ScopeOrder() public {
        bytes32 all = _grant(patient, provider2, 0, TREAT);
        bytes32 category = _grant(patient, provider2, LABORATORY, TREAT);
        bytes32 rec = _grant(patient, provider2, recordId, TREAT);
        _assertAuthorized(rec);
        vm.startPrank(patient);
        ledger.revokeConsent(rec);
        _assertAuthorized(category);
        ledger.revokeConsent(category);
        _assertAuthorized(all);
        ledger.revokeConsent(all);
        _assertAuthorized(0);
        vm.stopPrank();
    }

    function test_IsAuthorized_OtherScopesDoNotMatch() public {
        _grant(patient, provider2, IMAGING, TREAT);
        _grant(patient, provider2, _anchor(patient, "other"), TREAT);
        _grant(patient, provider2, bytes32(uint256(1)), TREAT);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_OtherPurposeDoesNotMatch() public {
        _grant(patient, provider2, 0, HPAYMT);
        _assertAuthorized(0);
        vm.assertTrue(ledger.isAuthorized(patient, provider2, recordId, HPAYMT));
    }

    function test_IsAuthorized_OtherGranteeDoesNotMatch() public {
        _grant(patient, provider, 0, TREAT);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_OtherPatientsConsentDoesNotMatch() public {
        _grant(stranger, provider2, 0, TREAT);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_ValidityWindow() public {
        uint64 from = uint64(block.timestamp + 100);
        uint64 until = from + 50;
        vm.prank(patient);
        bytes32 id = ledger.grantConsent(patient, provider2, 0, TREAT, from, until);
        vm.warp(from - 1);
        _assertAuthorized(0);
        vm.warp(from); // inclusive
        _assertAuthorized(id);
        vm.warp(until - 1);
        _assertAuthorized(id);
        vm.warp(until); // exclusive
        _assertAuthorized(0);
    }

    function test_IsAuthorized_RevokedConsent() public {
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_SuspendedGrantee() public {
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        vm.prank(admin);
        ledger.suspendProvider(provider2);
        _assertAuthorized(0);
        vm.prank(admin);
        ledger.reinstateProvider(provider2);
        _assertAuthorized(id);
    }

    function test_IsAuthorized_GranteeWithoutProviderRole() public {
        _grant(patient, stranger, 0, TREAT);
        vm.assertFalse(ledger.isAuthorized(patient, stranger, recordId, TREAT));
        vm.prank(admin);
        ledger.onboardProvider(stranger, "Late Clinic");
        vm.assertTrue(ledger.isAuthorized(patient, stranger, recordId, TREAT));
    }

    function test_IsAuthorized_ErasedRecord() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_UnknownRecord() public {
        _grant(patient, provider2, 0, TREAT);
        vm.assertFalse(ledger.isAuthorized(patient, provider2, keccak256("nope"), TREAT));
        vm.assertFalse(ledger.isAuthorized(stranger, provider2, recordId, TREAT));
    }

    function test_IsAuthorized_NeverForEmergencyPurpose() public view {
        vm.assertFalse(ledger.isAuthorized(patient, provider2, recordId, ETREAT));
        vm.assertEq(ledger.authorizingConsent(patient, provider2, recordId, ETREAT), 0);
    }

    // ------------------------------------------------------------ logAccess

    function test_LogAccess() public {
        bytes32 id = _grant(patient, provider2, LABORATORY, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, provider2, 1, TREAT, id);
        vm.prank(custodian);
        vm.assertEq(ledger.logAccess(patient, recordId, provider2, TREAT), id);
    }

    function test_LogAccess_ReportsHeadVersion() public {
        bytes32 id = _grant(patient, provider2, recordId, HOPERAT);
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.prank(provider);
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, provider2, 2, HOPERAT, id);
        vm.prank(custodian);
        ledger.logAccess(patient, recordId, provider2, HOPERAT);
    }

    function test_RevertWhen_LogAccessCallerIsNotCustodian() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(provider2);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, provider2, CUSTODIAN_ROLE)
        );
        ledger.logAccess(patient, recordId, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessRecordIsUnknown() public {
        bytes32 unknown = keccak256("nope");
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, patient, unknown));
        ledger.logAccess(patient, unknown, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessRecordIsErased() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.logAccess(patient, recordId, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessWithoutConsent() public {
        vm.prank(custodian);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, provider2, TREAT)
        );
        ledger.logAccess(patient, recordId, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessConsentRevoked() public {
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.prank(custodian);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, provider2, TREAT)
        );
        ledger.logAccess(patient, recordId, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessConsentExpired() public {
        vm.prank(patient);
        ledger.grantConsent(patient, provider2, 0, TREAT, 0, uint64(block.timestamp + 1));
        vm.warp(block.timestamp + 1);
        vm.prank(custodian);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, provider2, TREAT)
        );
        ledger.logAccess(patient, recordId, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessAccessorIsSuspended() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(admin);
        ledger.suspendProvider(provider2);
        vm.prank(custodian);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, provider2, TREAT)
        );
        ledger.logAccess(patient, recordId, provider2, TREAT);
    }

    function test_RevertWhen_LogAccessPurposeIsEmergency() public {
        vm.prank(custodian);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, provider2, ETREAT)
        );
        ledger.logAccess(patient, recordId, provider2, ETREAT);
    }

    // ------------------------------------------------------------ logEmergencyAccess

    function test_LogEmergencyAccess() public {
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.EmergencyAccessLogged(recordId, patient, provider2, 1, REASON);
        vm.prank(custodian);
        ledger.logEmergencyAccess(patient, recordId, provider2, REASON);
    }

    function test_RevertWhen_LogEmergencyCallerIsNotCustodian() public {
        vm.prank(provider2);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, provider2, CUSTODIAN_ROLE)
        );
        ledger.logEmergencyAccess(patient, recordId, provider2, REASON);
    }

    function test_RevertWhen_LogEmergencyRecordIsUnknown() public {
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, stranger, recordId));
        ledger.logEmergencyAccess(stranger, recordId, provider2, REASON);
    }

    function test_RevertWhen_LogEmergencyRecordIsErased() public {
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.logEmergencyAccess(patient, recordId, provider2, REASON);
    }

    function test_RevertWhen_ReasonIsEmpty() public {
        vm.prank(custodian);
        vm.expectRevert(IConsentLedger.EmptyReason.selector);
        ledger.logEmergencyAccess(patient, recordId, provider2, 0);
    }

    function test_RevertWhen_AccessorHasNoEmergencyRole() public {
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, provider));
        ledger.logEmergencyAccess(patient, recordId, provider, REASON);
    }

    function test_RevertWhen_EmergencyAccessorIsSuspended() public {
        vm.prank(admin);
        ledger.suspendProvider(provider2);
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, provider2));
        ledger.logEmergencyAccess(patient, recordId, provider2, REASON);
    }

    function test_RevertWhen_EmergencyAccessorIsNotProvider() public {
        vm.prank(admin);
        ledger.grantRole(EMERGENCY_ROLE, stranger);
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, stranger));
        ledger.logEmergencyAccess(patient, recordId, stranger, REASON);
    }

    // ------------------------------------------------------------ anchorDisclosureBatch

    function test_AnchorDisclosureBatch() public {
        bytes32 root1 = keccak256("root1");
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DisclosureBatchAnchored(root1, 0, 10);
        vm.prank(custodian);
        ledger.anchorDisclosureBatch(root1, 0, 10);
        (bytes32 root, uint64 size) = ledger.disclosureBatchHead();
        vm.assertEq(root, root1);
        vm.assertEq(size, 10);

        bytes32 root2 = keccak256("root2");
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DisclosureBatchAnchored(root2, 10, 11);
        vm.prank(custodian);
        ledger.anchorDisclosureBatch(root2, 10, 11);
        (root, size) = ledger.disclosureBatchHead();
        vm.assertEq(root, root2);
        vm.assertEq(size, 11);
    }

    function test_RevertWhen_BatchDoesNotStartAtSize() public {
        vm.startPrank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 0, 1, 5));
        ledger.anchorDisclosureBatch(keccak256("r"), 1, 5);
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 5);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 5, 4, 9));
        ledger.anchorDisclosureBatch(keccak256("r"), 4, 9);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 5, 0, 9));
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 9);
        vm.stopPrank();
    }

    function test_RevertWhen_BatchIsEmpty() public {
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 0, 0, 0));
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 0);
    }

    function test_RevertWhen_BatchRootIsZero() public {
        vm.prank(custodian);
        vm.expectRevert(IConsentLedger.EmptyBatchRoot.selector);
        ledger.anchorDisclosureBatch(0, 0, 1);
    }

    function test_RevertWhen_BatchCallerIsNotCustodian() public {
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, admin, CUSTODIAN_ROLE)
        );
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 1);
    }
}
