// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Unordered per-signer nonces: the bitmap layout, invalidation, and that no one spends another's nonce.
contract ConsentLedgerNoncesTest is LedgerFixture {
    function test_NonceBitmapLayout() public {
        uint256[5] memory nonces = [uint256(0), 255, 256, 513, type(uint256).max];
        vm.startPrank(patient);
        for (uint256 i; i < nonces.length; ++i) {
            ledger.invalidateNonce(nonces[i]);
        }
        vm.stopPrank();
        vm.assertEq(ledger.nonceBitmap(patient, 0), (uint256(1) << 255) | 1);
        vm.assertEq(ledger.nonceBitmap(patient, 1), 1);
        vm.assertEq(ledger.nonceBitmap(patient, 2), 2);
        vm.assertEq(ledger.nonceBitmap(patient, type(uint256).max >> 8), uint256(1) << 255);
        vm.assertEq(ledger.nonceBitmap(patient, 3), 0);
        for (uint256 i; i < nonces.length; ++i) {
            vm.assertTrue(ledger.nonceUsed(patient, nonces[i]));
        }
        vm.assertFalse(ledger.nonceUsed(patient, 1));
        vm.assertFalse(ledger.nonceUsed(patient, 257));
        vm.assertFalse(ledger.nonceUsed(patient, type(uint256).max - 1));
    }

    function test_InvalidateNonce() public {
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.NonceInvalidated(patient, 77);
        vm.prank(patient);
        ledger.invalidateNonce(77);
        vm.assertTrue(ledger.nonceUsed(patient, 77));
        vm.assertFalse(ledger.nonceUsed(stranger, 77));
    }

    function test_RevertWhen_NonceInvalidatedTwice() public {
        vm.startPrank(patient);
        ledger.invalidateNonce(77);
        vm.expectRevert(_nonceUsed(patient, 77));
        ledger.invalidateNonce(77);
        vm.stopPrank();
    }

    function test_RevertWhen_InvalidatingASpentNonce() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        vm.prank(patient);
        vm.expectRevert(_nonceUsed(patient, g.nonce));
        ledger.invalidateNonce(g.nonce);
    }

    /// @dev The patient signed a grant and changed its mind before a relayer sent it.
    function test_InvalidateNonce_CancelsASignedGrant() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.prank(patient);
        ledger.invalidateNonce(g.nonce);
        vm.expectRevert(_nonceUsed(patient, g.nonce));
        ledger.grantConsentBySig(g, sig);
        vm.assertEq(ledger.consent(_consentId(patient, provider, 0, TREAT)).patient, address(0));
    }

    /// @dev A provider signed an access request and withdrew it.
    function test_InvalidateNonce_CancelsASignedAccessRequest() public {
        bytes32 recordId = _anchor(patient, "salt");
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.prank(provider2);
        ledger.invalidateNonce(q.nonce);
        vm.expectRevert(_nonceUsed(provider2, q.nonce));
        ledger.logAccessBySig(q, sig);
    }

    function test_InvalidateNonce_CancelsADelegatesSignedGrant() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(DELEGATE_PK, g);
        vm.prank(delegate);
        ledger.invalidateNonce(g.nonce);
        vm.expectRevert(_nonceUsed(delegate, g.nonce));
        ledger.grantConsentBySig(g, sig);
    }

    /// @dev The patient invalidating its own nonce does not cancel what a delegate signed with that value.
    function test_InvalidateNonce_OnlyTheCallersOwn() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(DELEGATE_PK, g);
        vm.prank(patient);
        ledger.invalidateNonce(g.nonce);
        ledger.grantConsentBySig(g, sig);
        // and a relayer or operator invalidating a value spends only its own
        vm.prank(custodian);
        ledger.invalidateNonce(g.nonce + 1);
        vm.prank(admin);
        ledger.invalidateNonce(g.nonce + 1);
        vm.assertFalse(ledger.nonceUsed(patient, g.nonce + 1));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, _consentId(patient, provider, 0, TREAT));
        r.nonce = g.nonce + 1;
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
    }

    /// @dev A failed message spends nothing: the same nonce works for the next, valid one.
    function test_RevertedMessageLeavesNonceUnused() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(_invalidSigner(patient, stranger));
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
        vm.assertFalse(ledger.nonceUsed(patient, g.nonce));
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        vm.assertTrue(ledger.nonceUsed(patient, g.nonce));
    }
}
