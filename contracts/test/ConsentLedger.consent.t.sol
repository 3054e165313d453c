// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Direct (msg.sender) consent grants and revocations, and delegations.
contract ConsentLedgerConsentTest is LedgerFixture {
    // ------------------------------------------------------------ grantConsent

    function test_Grant() public {
        uint64 from = uint64(block.timestamp);
        uint64 until = from + 30 days;
        bytes32 id = _consentId(patient, provider, IMAGING, HPAYMT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, patient, provider, IMAGING, HPAYMT, from, until, patient);
        vm.prank(patient);
        vm.assertEq(ledger.grantConsent(patient, provider, IMAGING, HPAYMT, from, until), id);

        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertEq(c.patient, patient);
        vm.assertEq(c.validFrom, from);
        vm.assertEq(c.validUntil, until);
        vm.assertFalse(c.revoked);
        vm.assertFalse(c.revokedByPatient);
        vm.assertEq(ledger.consentIdOf(patient, provider, IMAGING, HPAYMT), id);
        vm.assertEq(ledger.nonceBitmap(patient, 0), 0, "direct calls use no nonce");
    }

    function test_Grant_EveryGrantablePurpose() public {
        bytes32[6] memory purposes = [TREAT, HPAYMT, HOPERAT, HRESCH, PATRQT, PUBHLTH];
        for (uint256 i; i < purposes.length; ++i) {
            bytes32 id = _grant(patient, provider, 0, purposes[i]);
            vm.assertEq(ledger.consent(id).patient, patient);
        }
    }

    function test_Grant_MaxWindow() public {
        vm.prank(patient);
        bytes32 id = ledger.grantConsent(patient, provider, 0, TREAT, type(uint40).max - 1, type(uint40).max);
        vm.assertEq(ledger.consent(id).validFrom, type(uint40).max - 1);
        vm.assertEq(ledger.consent(id).validUntil, type(uint40).max);
    }

    function test_Grant_AgainReplacesWindowAndClearsRevocation() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.assertTrue(ledger.consent(id).revoked);
        vm.prank(patient);
        ledger.grantConsent(patient, provider, 0, TREAT, 100, 200);
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertFalse(c.revoked);
        vm.assertEq(c.validFrom, 100);
        vm.assertEq(c.validUntil, 200);
    }

    function test_Grant_ByLiveDelegate() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _consentId(patient, provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, patient, provider, 0, TREAT, 0, 0, delegate);
        vm.prank(delegate);
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
        vm.assertEq(ledger.consent(id).patient, patient);
    }

    function test_RevertWhen_CallerIsNotPatient() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, stranger));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_GranteeCallsForPatient() public {
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, provider));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_DelegateExpired() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1 days));
        vm.warp(block.timestamp + 1 days);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, delegate));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_DelegateRevoked() public {
        _delegate(patient, delegate, 0);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, delegate));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_DelegateOfAnotherPatient() public {
        _delegate(stranger, delegate, 0);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, delegate));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_PatientIsZero() public {
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantConsent(address(0), provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_GranteeIsZero() public {
        vm.prank(patient);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantConsent(patient, address(0), 0, TREAT, 0, 0);
    }

    function test_RevertWhen_PurposeIsUnknown() public {
        bytes32 marketing = "MARKETING";
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownPurpose.selector, marketing));
        ledger.grantConsent(patient, provider, 0, marketing, 0, 0);
    }

    function test_RevertWhen_PurposeIsNotLeftAligned() public {
        bytes32 rightAligned = bytes32(uint256(0x5452454154)); // "TREAT" as a number
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownPurpose.selector, rightAligned));
        ledger.grantConsent(patient, provider, 0, rightAligned, 0, 0);
    }

    function test_RevertWhen_PurposeIsEmergency() public {
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.PurposeNotGrantable.selector, ETREAT));
        ledger.grantConsent(patient, provider, 0, ETREAT, 0, 0);
    }

    function test_RevertWhen_ValidUntilIsValidFrom() public {
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, 100, 100));
        ledger.grantConsent(patient, provider, 0, TREAT, 100, 100);
    }

    function test_RevertWhen_ValidUntilBeforeValidFrom() public {
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, 100, 99));
        ledger.grantConsent(patient, provider, 0, TREAT, 100, 99);
    }

    function test_RevertWhen_ValidFromOverflowsUint40() public {
        uint64 from = uint64(type(uint40).max) + 1;
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, from, 0));
        ledger.grantConsent(patient, provider, 0, TREAT, from, 0);
    }

    function test_RevertWhen_ValidUntilOverflowsUint40() public {
        uint64 until = uint64(type(uint40).max) + 1;
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, 0, until));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, until);
    }

    // ------------------------------------------------------------ revokeConsent

    function test_Revoke() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, patient);
        vm.prank(patient);
        ledger.revokeConsent(id);
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertTrue(c.revoked);
        vm.assertTrue(c.revokedByPatient, "the patient's own revocation");
        vm.assertEq(c.patient, patient);
        vm.assertEq(ledger.nonceBitmap(patient, 0), 0, "direct calls use no nonce");
    }

    function test_Revoke_ByLiveDelegate() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        _delegate(patient, delegate, uint64(block.timestamp + 1));
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, delegate);
        vm.prank(delegate);
        ledger.revokeConsent(id);
        vm.assertTrue(ledger.consent(id).revoked);
        vm.assertFalse(ledger.consent(id).revokedByPatient, "a delegate's revocation");
    }

    function test_RevertWhen_RevokeConsentIsUnknown() public {
        bytes32 id = _consentId(patient, provider, 0, TREAT);
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownConsent.selector, id));
        ledger.revokeConsent(id);
    }

    function test_RevertWhen_ConsentAlreadyRevoked() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.startPrank(patient);
        ledger.revokeConsent(id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.ConsentAlreadyRevoked.selector, id));
        ledger.revokeConsent(id);
        vm.stopPrank();
    }

    function test_RevertWhen_RevokeCallerIsNotPatient() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, provider));
        ledger.revokeConsent(id);
    }

    function test_RevertWhen_RevokeByExpiredDelegate() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        _delegate(patient, delegate, uint64(block.timestamp + 10));
        vm.warp(block.timestamp + 10);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, delegate));
        ledger.revokeConsent(id);
    }

    // ------------------------------------------------------------ a delegate cannot undo the patient's revocation

    /// @dev The guardian attack: the patient revokes, the (still live) delegate re-grants at once.
    function test_RevertWhen_DelegateRegrantsWhatThePatientRevoked() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RevokedByPatient.selector, id));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertTrue(c.revoked);
        vm.assertTrue(c.revokedByPatient);
        vm.assertFalse(ledger.isAuthorized(patient, provider, _anchor(patient, "salt"), TREAT));
    }

    /// @dev A delegate's revocation is not the patient's: the patient revokes again to make it their own, and the
    /// delegate can no longer undo it.
    function test_Revoke_PatientMakesADelegatesRevocationTheirOwn() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(delegate);
        ledger.revokeConsent(id);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, patient);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.assertTrue(ledger.consent(id).revokedByPatient);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RevokedByPatient.selector, id));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_Revoke_PatientMakesADelegatesRevocationTheirOwnBySig() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(delegate);
        ledger.revokeConsent(id);
        IConsentLedger.ConsentRevoke memory r = IConsentLedger.ConsentRevoke(patient, id, 7, block.timestamp + 1);
        vm.prank(stranger);
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
        vm.assertTrue(ledger.consent(id).revokedByPatient);
        vm.assertTrue(ledger.nonceUsed(patient, 7));
    }

    function test_RevertWhen_DelegateRevokesWhatADelegateRevoked() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.startPrank(delegate);
        ledger.revokeConsent(id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.ConsentAlreadyRevoked.selector, id));
        ledger.revokeConsent(id);
        vm.stopPrank();
        IConsentLedger.ConsentRevoke memory r = IConsentLedger.ConsentRevoke(patient, id, 8, block.timestamp + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.ConsentAlreadyRevoked.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(DELEGATE_PK, r));
        vm.assertFalse(ledger.nonceUsed(delegate, 8), "a refused revocation spends no nonce");
    }

    /// @dev A consent the delegate granted and the patient revoked is out of the delegate's reach as well.
    function test_RevertWhen_DelegateRegrantsItsOwnGrantThePatientRevoked() public {
        _delegate(patient, delegate, 0);
        vm.prank(delegate);
        bytes32 id = ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RevokedByPatient.selector, id));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_Grant_PatientRegrantsWhatThePatientRevoked() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        _grant(patient, provider, 0, TREAT);
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertFalse(c.revoked);
        vm.assertFalse(c.revokedByPatient, "the patient's grant clears both flags");
        // and the delegate manages it again: revoke, re-grant
        vm.startPrank(delegate);
        ledger.revokeConsent(id);
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
        vm.stopPrank();
        vm.assertFalse(ledger.consent(id).revoked);
    }

    function test_Grant_DelegateRegrantsWhatADelegateRevoked() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(delegate);
        ledger.revokeConsent(id);
        vm.prank(delegate);
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
        vm.assertFalse(ledger.consent(id).revoked);
    }

    function test_RevertWhen_OtherDelegateRegrantsWhatThePatientRevoked() public {
        address second = vm.addr(0x5EC0);
        _delegate(patient, delegate, 0);
        _delegate(patient, second, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.prank(second);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RevokedByPatient.selector, id));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_Revoke_ByPatientAfterDelegateGrantSetsTheFlag() public {
        _delegate(patient, delegate, 0);
        vm.prank(delegate);
        bytes32 id = ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.assertTrue(ledger.consent(id).revokedByPatient);
    }

    // ------------------------------------------------------------ delegations

    function test_GrantDelegate() public {
        uint64 until = uint64(block.timestamp + 7 days);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DelegateGranted(patient, delegate, until);
        _delegate(patient, delegate, until);
        (uint64 validUntil, bool live) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, until);
        vm.assertTrue(live);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
        vm.assertFalse(ledger.isLiveDelegate(delegate, patient), "not symmetric");
        vm.assertEq(ledger.nonceBitmap(patient, 0), 0, "direct calls use no nonce");
    }

    function test_GrantDelegate_ExpiresAtValidUntil() public {
        uint64 until = uint64(block.timestamp + 100);
        _delegate(patient, delegate, until);
        vm.warp(until - 1);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
        vm.warp(until);
        vm.assertFalse(ledger.isLiveDelegate(patient, delegate));
        (uint64 validUntil, bool live) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, until);
        vm.assertFalse(live);
    }

    function test_GrantDelegate_NoExpiry() public {
        _delegate(patient, delegate, 0);
        vm.warp(type(uint40).max);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
    }

    function test_GrantDelegate_InThePastIsStoredNotLive() public {
        _delegate(patient, delegate, 0);
        _delegate(patient, delegate, uint64(block.timestamp - 1));
        (uint64 validUntil, bool live) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, block.timestamp - 1);
        vm.assertFalse(live);
        // still a (dead) delegation: the patient can revoke it
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
    }

    function test_GrantDelegate_AgainReplacesExpiry() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1));
        _delegate(patient, delegate, 0);
        vm.warp(block.timestamp + 1 days);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
    }

    function test_DelegateCannotGrantDelegationsForPatient() public {
        _delegate(patient, delegate, 0);
        // grantDelegate always acts for the caller: the delegate only delegates its own authority
        _delegate(delegate, stranger, 0);
        vm.assertFalse(ledger.isLiveDelegate(patient, stranger));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, stranger));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);
    }

    function test_RevertWhen_DelegateIsZero() public {
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, address(0)));
        ledger.grantDelegate(address(0), 0);
    }

    function test_RevertWhen_DelegateIsPatient() public {
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, patient));
        ledger.grantDelegate(patient, 0);
    }

    function test_RevokeDelegate() public {
        _delegate(patient, delegate, 0);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DelegateRevoked(patient, delegate);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        (uint64 validUntil, bool live) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, 0);
        vm.assertFalse(live);
    }

    function test_RevokeDelegate_Expired() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1));
        vm.warp(block.timestamp + 2);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        (uint64 validUntil,) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, 0);
    }

    function test_RevertWhen_RevokeDelegateWithoutDelegation() public {
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, delegate));
        ledger.revokeDelegate(delegate);
    }

    function test_RevertWhen_RevokeDelegateTwice() public {
        _delegate(patient, delegate, 0);
        vm.startPrank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, delegate));
        ledger.revokeDelegate(delegate);
        vm.stopPrank();
    }

    function test_RevertWhen_DelegateRevokesItself() public {
        _delegate(patient, delegate, 0);
        // revokeDelegate acts for the caller, who has no delegation to `delegate`
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, delegate));
        ledger.revokeDelegate(delegate);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
    }
}
