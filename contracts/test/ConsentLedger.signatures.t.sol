// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev EIP-712: type strings, domain, relayed consent grants/revocations and delegations, replay and
/// cross-domain refusal, delegate and ERC-1271 signers, and the rule that a delegate cannot undo the patient's
/// own revocation.
contract ConsentLedgerSignaturesTest is LedgerFixture {
    // ------------------------------------------------------------ typed data

    function test_TypehashesMatchTypeStrings() public view {
        vm.assertEq(
            ledger.CONSENT_GRANT_TYPEHASH(),
            keccak256(
                "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.CONSENT_REVOKE_TYPEHASH(),
            keccak256("ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)")
        );
        vm.assertEq(
            ledger.DELEGATE_GRANT_TYPEHASH(),
            keccak256(
                "DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.DELEGATE_REVOKE_TYPEHASH(),
            keccak256("DelegateRevoke(address patient,address delegate,uint256 nonce,uint256 deadline)")
        );
        vm.assertEq(
            ledger.RECORD_ANCHOR_TYPEHASH(),
            keccak256(
                "RecordAnchor(address patient,address author,bytes32 category,bytes32 salt,bytes cid,bytes32 commitment,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.RECORD_AMEND_TYPEHASH(),
            keccak256(
                "RecordAmend(address patient,address author,bytes32 recordId,bytes cid,bytes32 commitment,bytes32 previousHash,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.ACCESS_REQUEST_TYPEHASH(),
            keccak256(
                "AccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 purpose,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.EMERGENCY_ACCESS_REQUEST_TYPEHASH(),
            keccak256(
                "EmergencyAccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.RECORD_ERASE_TYPEHASH(),
            keccak256("RecordErase(address patient,bytes32 recordId,uint256 nonce,uint256 deadline)")
        );
        vm.assertEq(
            ledger.ENCRYPTION_KEY_TYPEHASH(),
            keccak256("EncryptionKey(address account,bytes32 publicKey,uint256 nonce,uint256 deadline)")
        );
    }

    function test_DomainSeparator() public view {
        vm.assertEq(
            ledger.DOMAIN_SEPARATOR(),
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("ConsentLedger"),
                    keccak256("1"),
                    block.chainid,
                    address(ledger)
                )
            )
        );
        (, string memory name, string memory version, uint256 chainId, address verifyingContract,,) =
            ledger.eip712Domain();
        vm.assertEq(name, "ConsentLedger");
        vm.assertEq(version, "1");
        vm.assertEq(chainId, block.chainid);
        vm.assertEq(verifyingContract, address(ledger));
    }

    function test_DomainSeparatorFollowsChainId() public {
        vm.chainId(4242);
        vm.assertEq(ledger.DOMAIN_SEPARATOR(), _domainSeparator(address(ledger), 4242));
    }

    // ------------------------------------------------------------ grantConsentBySig

    function test_GrantBySig() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.scope = LABORATORY;
        g.purpose = HRESCH;
        g.validFrom = uint64(block.timestamp + 1 days);
        g.validUntil = uint64(block.timestamp + 30 days);
        bytes32 id = _consentId(patient, provider, LABORATORY, HRESCH);
        bytes memory sig = _signGrant(PATIENT_PK, g);

        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(
            id, patient, provider, LABORATORY, HRESCH, g.validFrom, g.validUntil, patient
        );
        vm.prank(stranger); // anyone relays
        vm.assertEq(ledger.grantConsentBySig(g, sig), id);

        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertEq(c.patient, patient);
        vm.assertEq(c.validFrom, g.validFrom);
        vm.assertEq(c.validUntil, g.validUntil);
        vm.assertTrue(ledger.nonceUsed(patient, g.nonce));
        vm.assertFalse(ledger.nonceUsed(stranger, g.nonce), "the relayer's nonces are untouched");
    }

    function test_GrantBySig_AtDeadline() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.deadline = block.timestamp;
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
    }

    function test_GrantBySig_NoncesInAnyOrder() public {
        uint256[4] memory nonces = [uint256(300), 5, 0, type(uint256).max];
        bytes32[4] memory purposes = [TREAT, HPAYMT, HOPERAT, HRESCH];
        for (uint256 i; i < nonces.length; ++i) {
            IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
            g.nonce = nonces[i];
            g.purpose = purposes[i];
            ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
            vm.assertTrue(ledger.nonceUsed(patient, nonces[i]));
        }
        vm.assertFalse(ledger.nonceUsed(patient, 1));
        vm.assertFalse(ledger.nonceUsed(patient, 299));
    }

    function test_RevertWhen_GrantSignatureReplayed() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        ledger.grantConsentBySig(g, sig);
        vm.expectRevert(_nonceUsed(patient, g.nonce));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantReplayedAfterRevocation() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        bytes32 id = ledger.grantConsentBySig(g, sig);
        vm.prank(patient);
        ledger.revokeConsent(id);
        // a relayer cannot resurrect the consent with the old signature
        vm.expectRevert(_nonceUsed(patient, g.nonce));
        ledger.grantConsentBySig(g, sig);
        vm.assertTrue(ledger.consent(id).revoked);
    }

    function test_RevertWhen_GrantSignatureExpired() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.warp(g.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, g.deadline, g.deadline + 1));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedForAnotherChain() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g); // signed for the current chain id
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        address recovered = _recovered(_hash(g), _domainSeparator(address(ledger), original + 1), sig);
        vm.expectRevert(_invalidSigner(patient, recovered));
        ledger.grantConsentBySig(g, sig);
        // and it still works on the chain it was signed for
        vm.chainId(original);
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedForAnotherLedger() public {
        ConsentLedger other = new ConsentLedger(admin);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sigForOther = _signFor(PATIENT_PK, address(other), block.chainid, _hash(g));
        other.grantConsentBySig(g, sigForOther); // valid where it was meant to be used
        address recovered = _recovered(_hash(g), ledger.DOMAIN_SEPARATOR(), sigForOther);
        vm.assertNotEq(recovered, patient);
        vm.expectRevert(_invalidSigner(patient, recovered));
        ledger.grantConsentBySig(g, sigForOther);
    }

    function test_RevertWhen_GrantSignedByRandomKey() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(STRANGER_PK, g);
        vm.expectRevert(_invalidSigner(patient, stranger));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedByGrantee() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PROVIDER_PK, g);
        vm.expectRevert(_invalidSigner(patient, provider));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedByCustodianOrAdmin() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(_invalidSigner(patient, custodian));
        ledger.grantConsentBySig(g, _signGrant(CUSTODIAN_PK, g));
        vm.expectRevert(_invalidSigner(patient, admin));
        ledger.grantConsentBySig(g, _signGrant(ADMIN_PK, g));
    }

    function test_RevertWhen_GrantMessageTampered() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        g.validUntil = uint64(block.timestamp + 365 days); // relayer widens the window
        address recovered = _recovered(_hash(g), ledger.DOMAIN_SEPARATOR(), sig);
        vm.expectRevert(_invalidSigner(patient, recovered));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignatureIsMalformed() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(_invalidSigner(patient, address(0)));
        ledger.grantConsentBySig(g, hex"1234");
        bytes memory sig = _signGrant(PATIENT_PK, g);
        sig[64] = bytes1(uint8(29)); // invalid v
        vm.expectRevert(_invalidSigner(patient, address(0)));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignatureIsMalleable() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PATIENT_PK, _digest(_hash(g)));
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        bytes memory highS = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.expectRevert(_invalidSigner(patient, address(0)));
        ledger.grantConsentBySig(g, highS);
    }

    function test_RevertWhen_GrantBySigIsInvalid() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.purpose = ETREAT;
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.PurposeNotGrantable.selector, ETREAT));
        ledger.grantConsentBySig(g, sig);

        g.purpose = TREAT;
        g.validFrom = 10;
        g.validUntil = 5;
        sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, 10, 5));
        ledger.grantConsentBySig(g, sig);

        g.validFrom = 0;
        g.validUntil = 0;
        g.grantee = address(0);
        sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantConsentBySig(g, sig);
        vm.assertFalse(ledger.nonceUsed(patient, g.nonce), "failed grants use no nonce");
    }

    function test_RevertWhen_GrantBySigPatientIsZero() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(0));
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
    }

    // ------------------------------------------------------------ delegate signatures

    function test_GrantBySig_LiveDelegate() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1 days));
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes32 id = _consentId(patient, provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, patient, provider, 0, TREAT, 0, 0, delegate);
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertTrue(ledger.nonceUsed(delegate, g.nonce), "the delegate's nonce");
        vm.assertFalse(ledger.nonceUsed(patient, g.nonce), "not the patient's");
    }

    /// @dev A delegate's grant with nonce N leaves the patient's nonce N unused: the patient's revocation
    /// signed with the same N still goes through.
    function test_NoncesOfPatientAndDelegateAreIndependent() public {
        _delegate(patient, delegate, 0);
        uint256 n = 42;
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = n;
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertTrue(ledger.nonceUsed(delegate, n));
        vm.assertFalse(ledger.nonceUsed(patient, n));

        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        r.nonce = n;
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
        vm.assertTrue(ledger.nonceUsed(patient, n));
        vm.assertTrue(ledger.consent(id).revokedByPatient);

        // the delegate's N is still spent: its signatures with N are dead
        IConsentLedger.ConsentRevoke memory r2 = _revokeMsg(patient, _grant(patient, provider2, 0, TREAT));
        r2.nonce = n;
        vm.expectRevert(_nonceUsed(delegate, n));
        ledger.revokeConsentBySig(r2, _signRevoke(DELEGATE_PK, r2));
    }

    /// @dev Two delegates may use the same nonce value; each spends only its own.
    function test_NoncesOfTwoDelegatesAreIndependent() public {
        uint256 secondPk = 0x5EC0;
        address second = vm.addr(secondPk);
        _delegate(patient, delegate, 0);
        _delegate(patient, second, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = 7;
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        g.purpose = HPAYMT;
        ledger.grantConsentBySig(g, _signGrant(secondPk, g));
        vm.assertTrue(ledger.nonceUsed(delegate, 7));
        vm.assertTrue(ledger.nonceUsed(second, 7));
        vm.assertFalse(ledger.nonceUsed(patient, 7));
    }

    function test_RevertWhen_GrantSignedByExpiredDelegate() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1 days));
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.deadline = block.timestamp + 2 days;
        bytes memory sig = _signGrant(DELEGATE_PK, g);
        vm.warp(block.timestamp + 1 days);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedByRevokedDelegate() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(DELEGATE_PK, g); // signed while live
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.grantConsentBySig(g, sig);
    }

    /// @dev The guardian attack, relayed: right after the patient revokes, the delegate signs a new grant.
    function test_RevertWhen_DelegateSignsRegrantAfterPatientRevoked() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));

        IConsentLedger.ConsentGrant memory again = _grantMsg(patient);
        bytes memory sig = _signGrant(DELEGATE_PK, again);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RevokedByPatient.selector, id));
        ledger.grantConsentBySig(again, sig);
        vm.assertTrue(ledger.consent(id).revoked);
        vm.assertFalse(ledger.nonceUsed(delegate, again.nonce), "the refused grant spends no nonce");
    }

    /// @dev A grant the delegate signed before the patient revoked cannot be relayed after it either.
    function test_RevertWhen_DelegatePresignedGrantRelayedAfterPatientRevoked() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.validUntil = uint64(block.timestamp + 365 days);
        bytes memory sig = _signGrant(DELEGATE_PK, g); // held back by the relayer
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RevokedByPatient.selector, id));
        ledger.grantConsentBySig(g, sig);
    }

    function test_GrantBySig_PatientRegrantsAfterOwnRevocation() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertFalse(c.revoked);
        vm.assertFalse(c.revokedByPatient);
    }

    function test_GrantBySig_DelegateRegrantsAfterDelegateRevocation() public {
        _delegate(patient, delegate, 0);
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        ledger.revokeConsentBySig(r, _signRevoke(DELEGATE_PK, r));
        vm.assertFalse(ledger.consent(id).revokedByPatient);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertFalse(ledger.consent(id).revoked);
    }

    // ------------------------------------------------------------ revokeConsentBySig

    function test_RevokeBySig() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, patient);
        vm.prank(stranger);
        ledger.revokeConsentBySig(r, sig);
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertTrue(c.revoked);
        vm.assertTrue(c.revokedByPatient);
        vm.assertTrue(ledger.nonceUsed(patient, r.nonce));
    }

    function test_RevokeBySig_LiveDelegate() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, delegate);
        ledger.revokeConsentBySig(r, _signRevoke(DELEGATE_PK, r));
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertTrue(c.revoked);
        vm.assertFalse(c.revokedByPatient);
        vm.assertTrue(ledger.nonceUsed(delegate, r.nonce));
        vm.assertFalse(ledger.nonceUsed(patient, r.nonce));
    }

    function test_RevertWhen_RevokeSignedByRevokedDelegate() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(DELEGATE_PK, r);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignatureReplayed() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        ledger.revokeConsentBySig(r, sig);
        _grant(patient, provider, 0, TREAT); // re-granted: the old revocation must not apply again
        vm.expectRevert(_nonceUsed(patient, r.nonce));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignatureExpired() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        vm.warp(r.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, r.deadline, r.deadline + 1));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignedForAnotherChainOrLedger() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signFor(PATIENT_PK, address(ledger), block.chainid + 1, _hash(r));
        vm.expectRevert(_invalidSigner(patient, _recovered(_hash(r), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.revokeConsentBySig(r, sig);
        sig = _signFor(PATIENT_PK, address(0xBEEF), block.chainid, _hash(r));
        vm.expectRevert(_invalidSigner(patient, _recovered(_hash(r), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignedByRandomKey() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectRevert(_invalidSigner(patient, stranger));
        ledger.revokeConsentBySig(r, _signRevoke(STRANGER_PK, r));
    }

    function test_RevertWhen_RevokeBySigConsentIsUnknown() public {
        bytes32 id = _consentId(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownConsent.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
    }

    function test_RevertWhen_RevokeBySigPatientMismatch() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        // the stranger signs a revocation of the patient's consent naming itself as patient
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(stranger, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownConsent.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(STRANGER_PK, r));
    }

    function test_RevertWhen_RevokeBySigAlreadyRevoked() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.ConsentAlreadyRevoked.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
    }

    // ------------------------------------------------------------ grantDelegateBySig

    function test_GrantDelegateBySig() public {
        uint64 until = uint64(block.timestamp + 90 days);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, until);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DelegateGranted(patient, delegate, until);
        vm.prank(stranger);
        ledger.grantDelegateBySig(d, _signDelegate(PATIENT_PK, d));
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
        vm.assertTrue(ledger.nonceUsed(patient, d.nonce));
    }

    function test_RevertWhen_NonceReusedAcrossMessageTypes() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        ledger.grantDelegateBySig(d, _signDelegate(PATIENT_PK, d));
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = d.nonce;
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(_nonceUsed(patient, d.nonce));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_DelegateGrantSignedByDelegate() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, stranger, 0);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.grantDelegateBySig(d, _signDelegate(DELEGATE_PK, d));
    }

    function test_RevertWhen_DelegateGrantReplayed() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        bytes memory sig = _signDelegate(PATIENT_PK, d);
        ledger.grantDelegateBySig(d, sig);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(_nonceUsed(patient, d.nonce));
        ledger.grantDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateGrantExpired() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        bytes memory sig = _signDelegate(PATIENT_PK, d);
        vm.warp(d.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, d.deadline, d.deadline + 1));
        ledger.grantDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateGrantSignedForAnotherChainOrLedger() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        bytes memory sig = _signFor(PATIENT_PK, address(ledger), block.chainid + 1, _hash(d));
        vm.expectRevert(_invalidSigner(patient, _recovered(_hash(d), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.grantDelegateBySig(d, sig);
        sig = _signFor(PATIENT_PK, address(0xBEEF), block.chainid, _hash(d));
        vm.expectRevert(_invalidSigner(patient, _recovered(_hash(d), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.grantDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateGrantSignedByRandomKey() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, stranger, 0);
        vm.expectRevert(_invalidSigner(patient, stranger));
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
    }

    function test_RevertWhen_DelegateGrantPatientIsZero() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(address(0), delegate, 0);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
    }

    function test_RevertWhen_DelegateGrantDelegateIsPatient() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, patient, 0);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, patient));
        ledger.grantDelegateBySig(d, _signDelegate(PATIENT_PK, d));
    }

    // ------------------------------------------------------------ revokeDelegateBySig

    function test_RevokeDelegateBySig() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        bytes memory sig = _signDelegateRevoke(PATIENT_PK, d);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DelegateRevoked(patient, delegate);
        vm.prank(stranger);
        ledger.revokeDelegateBySig(d, sig);
        (uint64 validUntil, bool live) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, 0);
        vm.assertFalse(live);
        vm.assertTrue(ledger.nonceUsed(patient, d.nonce));
        // the former delegate's signatures stop working at once
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
    }

    function test_RevokeDelegateBySig_Expired() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1));
        vm.warp(block.timestamp + 2);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        ledger.revokeDelegateBySig(d, _signDelegateRevoke(PATIENT_PK, d));
        (uint64 validUntil,) = ledger.delegation(patient, delegate);
        vm.assertEq(validUntil, 0);
    }

    /// @dev Whatever the delegate does with its own nonces (spend them, invalidate them), the patient's
    /// revocation of the delegation, signed with the same nonce values, still goes through.
    function test_RevokeDelegateBySig_AfterDelegateSpentAndInvalidatedNonces() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = 1;
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.startPrank(delegate);
        ledger.invalidateNonce(0);
        ledger.invalidateNonce(2);
        vm.stopPrank();

        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        for (uint256 n; n < 3; ++n) {
            vm.assertFalse(ledger.nonceUsed(patient, n));
        }
        d.nonce = 1;
        ledger.revokeDelegateBySig(d, _signDelegateRevoke(PATIENT_PK, d));
        vm.assertFalse(ledger.isLiveDelegate(patient, delegate));
    }

    function test_RevertWhen_DelegateRevokeSignedByDelegate() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.revokeDelegateBySig(d, _signDelegateRevoke(DELEGATE_PK, d));
        // nor another delegate's delegation
        address second = vm.addr(0x5EC0);
        _delegate(patient, second, 0);
        d = _delegateRevokeMsg(patient, second);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.revokeDelegateBySig(d, _signDelegateRevoke(DELEGATE_PK, d));
        vm.assertTrue(ledger.isLiveDelegate(patient, second));
    }

    function test_RevertWhen_DelegateRevokeReplayed() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        bytes memory sig = _signDelegateRevoke(PATIENT_PK, d);
        ledger.revokeDelegateBySig(d, sig);
        _delegate(patient, delegate, 0); // delegated again: the old revocation must not apply again
        vm.expectRevert(_nonceUsed(patient, d.nonce));
        ledger.revokeDelegateBySig(d, sig);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
    }

    function test_RevertWhen_DelegateRevokeExpired() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        bytes memory sig = _signDelegateRevoke(PATIENT_PK, d);
        vm.warp(d.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, d.deadline, d.deadline + 1));
        ledger.revokeDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateRevokeSignedForAnotherChain() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        bytes memory sig = _signDelegateRevoke(PATIENT_PK, d);
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        vm.expectRevert(
            _invalidSigner(patient, _recovered(_hash(d), _domainSeparator(address(ledger), original + 1), sig))
        );
        ledger.revokeDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateRevokeSignedForAnotherLedger() public {
        ConsentLedger other = new ConsentLedger(admin);
        _delegate(patient, delegate, 0);
        vm.prank(patient);
        other.grantDelegate(delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        bytes memory sig = _signFor(PATIENT_PK, address(other), block.chainid, _hash(d));
        other.revokeDelegateBySig(d, sig);
        vm.expectRevert(_invalidSigner(patient, _recovered(_hash(d), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.revokeDelegateBySig(d, sig);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
    }

    function test_RevertWhen_DelegateRevokeSignedByRandomKey() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        vm.expectRevert(_invalidSigner(patient, stranger));
        ledger.revokeDelegateBySig(d, _signDelegateRevoke(STRANGER_PK, d));
    }

    function test_RevertWhen_DelegateRevokeWithoutDelegation() public {
        IConsentLedger.DelegateRevoke memory d = _delegateRevokeMsg(patient, delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, delegate));
        ledger.revokeDelegateBySig(d, _signDelegateRevoke(PATIENT_PK, d));
    }

    // ------------------------------------------------------------ ERC-1271 patient wallets

    function test_GrantBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        bytes32 id = _consentId(address(wallet), provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, address(wallet), provider, 0, TREAT, 0, 0, address(wallet));
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
        vm.assertEq(ledger.consent(id).patient, address(wallet));
        vm.assertTrue(ledger.nonceUsed(address(wallet), g.nonce));
        vm.assertFalse(ledger.nonceUsed(stranger, g.nonce), "the wallet's nonce, not its owner's");
    }

    function test_RevokeBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(address(wallet), id);
        ledger.revokeConsentBySig(r, _signRevoke(STRANGER_PK, r));
        vm.assertTrue(ledger.consent(id).revoked);
        vm.assertTrue(ledger.consent(id).revokedByPatient, "the wallet is the patient");
    }

    function test_GrantDelegateBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(address(wallet), delegate, 0);
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
        vm.assertTrue(ledger.isLiveDelegate(address(wallet), delegate));
    }

    function test_RevokeDelegateBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(address(wallet), delegate, 0);
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
        IConsentLedger.DelegateRevoke memory r = _delegateRevokeMsg(address(wallet), delegate);
        ledger.revokeDelegateBySig(r, _signDelegateRevoke(STRANGER_PK, r));
        vm.assertFalse(ledger.isLiveDelegate(address(wallet), delegate));
    }

    /// @dev A wallet patient's live delegate signs by ECDSA, and spends its own nonce.
    function test_GrantBySig_DelegateOfERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(address(wallet), delegate, 0);
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        g.nonce = d.nonce; // the wallet's nonce d.nonce is spent, the delegate's is not
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertTrue(ledger.nonceUsed(delegate, d.nonce));
    }

    function test_Grant_ERC1271WalletDirect() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        vm.prank(stranger);
        wallet.execute(
            address(ledger),
            abi.encodeCall(IConsentLedger.grantConsent, (address(wallet), provider, bytes32(0), TREAT, 0, 0))
        );
        vm.assertEq(ledger.consent(_consentId(address(wallet), provider, 0, TREAT)).patient, address(wallet));
    }

    function test_RevertWhen_ERC1271WalletRejects() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        wallet.setRejectAll(true);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        vm.expectRevert(_invalidSigner(address(wallet), stranger));
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
    }

    function test_RevertWhen_ERC1271WalletSignedByNonOwner() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        vm.expectRevert(_invalidSigner(address(wallet), patient));
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
    }

    function test_RevertWhen_PatientWithoutCodeAndBadSignature() public {
        // an EOA patient never goes through ERC-1271, even with an empty signature
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(_invalidSigner(patient, address(0)));
        ledger.grantConsentBySig(g, "");
    }
}
