// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {PatientAccount} from "../src/PatientAccount.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";
import {PasskeyFixture} from "./utils/PasskeyFixture.sol";

/// @dev A passkey account as a patient of the ledger, unchanged: every message a patient signs (consent grant and
/// revocation, delegation and its revocation, erasure, encryption key, own access request) relayed with a
/// WebAuthn assertion, and the assertions the ledger must refuse.
contract PatientAccountLedgerTest is LedgerFixture, PasskeyFixture {
    PatientAccount internal account;
    address internal holder; // the account's address, as the ledger's patient

    function setUp() public override {
        super.setUp();
        _deployFactory();
        account = _accountOf(PHONE_PK);
        holder = address(account);
        vm.label(holder, "passkey account");
    }

    // ------------------------------------------------------------ what a passkey patient signs

    function test_PasskeyPatient_GrantsConsentBySig() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes32 id = _consentId(holder, provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, holder, provider, 0, TREAT, 0, 0, holder);
        vm.prank(stranger); // any relayer
        vm.assertEq(ledger.grantConsentBySig(g, _assertion(PHONE_PK, _digest(_hash(g)))), id);
        vm.assertEq(ledger.consent(id).patient, holder);
        vm.assertTrue(ledger.nonceUsed(holder, g.nonce), "the account's nonce");
        bytes32 recordId = _anchor(holder, "salt");
        vm.assertTrue(ledger.isAuthorized(holder, provider, recordId, TREAT));
    }

    function test_PasskeyPatient_RevokesConsentBySig() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes32 id = ledger.grantConsentBySig(g, _assertion(PHONE_PK, _digest(_hash(g))));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(holder, id);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, holder, holder);
        ledger.revokeConsentBySig(r, _assertion(PHONE_PK, _digest(_hash(r))));
        vm.assertTrue(ledger.consent(id).revoked);
        vm.assertTrue(ledger.consent(id).revokedByPatient, "the account is the patient");
    }

    /// @dev The account names a delegate (an ECDSA key: a guardian), the delegate grants for it, and the account
    /// ends the delegation.
    function test_PasskeyPatient_NamesAndRevokesADelegate() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(holder, delegate, 0);
        ledger.grantDelegateBySig(d, _assertion(PHONE_PK, _digest(_hash(d))));
        vm.assertTrue(ledger.isLiveDelegate(holder, delegate));

        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertEq(ledger.consent(id).patient, holder, "granted by the delegate");

        IConsentLedger.DelegateRevoke memory dr = _delegateRevokeMsg(holder, delegate);
        ledger.revokeDelegateBySig(dr, _assertion(PHONE_PK, _digest(_hash(dr))));
        vm.assertFalse(ledger.isLiveDelegate(holder, delegate));
    }

    function test_PasskeyPatient_ErasesRecordBySig() public {
        bytes32 recordId = _anchor(holder, "salt");
        IConsentLedger.RecordErase memory e = _eraseMsg(holder, recordId);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, holder, holder, 1);
        ledger.eraseRecordBySig(e, _assertion(PHONE_PK, _digest(_hash(e))));
        (IConsentLedger.Record memory head,) = ledger.record(holder, recordId);
        vm.assertTrue(head.erased);
    }

    function test_PasskeyPatient_SetsEncryptionKeyBySig() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(holder, PUBLIC_KEY);
        ledger.setEncryptionKeyBySig(k, _assertion(PHONE_PK, _digest(_hash(k))));
        vm.assertEq(ledger.encryptionKeyOf(holder), PUBLIC_KEY);
    }

    function test_PasskeyPatient_RequestsOwnRecord() public {
        bytes32 recordId = _anchor(holder, "salt");
        IConsentLedger.AccessRequest memory q = _accessMsg(holder, holder, recordId, 1, PATRQT);
        vm.assertEq(ledger.logAccessBySig(q, _assertion(PHONE_PK, _digest(_hash(q)))), bytes32(0));
        vm.assertTrue(ledger.nonceUsed(holder, q.nonce));
    }

    function test_PasskeyPatient_SecondDeviceSigns() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes32 id = ledger.grantConsentBySig(g, _assertion(LAPTOP_PK, _digest(_hash(g))));
        vm.assertEq(ledger.consent(id).patient, holder);
    }

    // ------------------------------------------------------------ what the ledger refuses

    function test_RevertWhen_PasskeyAssertionTampered() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes memory assertion = _assertion(PHONE_PK, _digest(_hash(g)));
        (bytes32 r, bytes32 s, uint256 challengeIndex, uint256 typeIndex, bytes memory authData, string memory json) =
            abi.decode(assertion, (bytes32, bytes32, uint256, uint256, bytes, string));
        bytes memory otherJson = bytes(json);
        otherJson[otherJson.length - 25] = "X"; // another origin
        vm.expectRevert(_invalidSigner(holder, address(0)));
        ledger.grantConsentBySig(g, abi.encode(r, s, challengeIndex, typeIndex, authData, string(otherJson)));
        authData[32] = 0x01; // user presence only
        vm.expectRevert(_invalidSigner(holder, address(0)));
        ledger.grantConsentBySig(g, abi.encode(r, s, challengeIndex, typeIndex, authData, json));
        vm.assertFalse(ledger.nonceUsed(holder, g.nonce));
    }

    function test_RevertWhen_PasskeyAssertionIsForAnotherMessage() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes memory assertion = _assertion(PHONE_PK, _digest(_hash(g)));
        g.grantee = provider2; // the relayer changes the grantee
        vm.expectRevert(_invalidSigner(holder, address(0)));
        ledger.grantConsentBySig(g, assertion);
    }

    function test_RevertWhen_PasskeyAssertionReplayed() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes memory assertion = _assertion(PHONE_PK, _digest(_hash(g)));
        ledger.grantConsentBySig(g, assertion);
        vm.expectRevert(_nonceUsed(holder, g.nonce));
        ledger.grantConsentBySig(g, assertion);
    }

    function test_RevertWhen_AnotherPatientsPasskeySigns() public {
        _accountOf(OTHER_PATIENT_PK);
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes memory assertion = _assertion(OTHER_PATIENT_PK, _digest(_hash(g)));
        vm.expectRevert(_invalidSigner(holder, address(0)));
        ledger.grantConsentBySig(g, assertion);
    }

    function test_RevertWhen_RemovedPasskeySigns() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        IConsentLedger.ConsentGrant memory g = _grantMsg(holder);
        bytes memory presigned = _assertion(LAPTOP_PK, _digest(_hash(g)));
        _removePasskey(account, PHONE_PK, LAPTOP_PK, 2); // the laptop is lost
        vm.expectRevert(_invalidSigner(holder, address(0)));
        ledger.grantConsentBySig(g, presigned);
    }

    function test_RevertWhen_PasskeySignsForAnotherPatient() public {
        // an assertion of the phone over a grant naming the ECDSA patient is not that patient's signature
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory assertion = _assertion(PHONE_PK, _digest(_hash(g)));
        vm.expectRevert(_invalidSigner(patient, address(0)));
        ledger.grantConsentBySig(g, assertion);
    }
}
