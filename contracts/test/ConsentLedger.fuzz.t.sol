// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Property tests over arbitrary inputs.
contract ConsentLedgerFuzzTest is LedgerFixture {
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    bytes32 internal recordId;

    function setUp() public override {
        super.setUp();
        recordId = _anchor(patient, "salt");
    }

    function _purpose(uint256 seed) internal pure returns (bytes32) {
        return [TREAT, HPAYMT, HOPERAT, HRESCH, PATRQT, PUBHLTH][seed % 6];
    }

    function testFuzz_ConsentIdOf(address p, address g, bytes32 scope, bytes32 purpose) public view {
        vm.assertEq(ledger.consentIdOf(p, g, scope, purpose), keccak256(abi.encode(p, g, scope, purpose)));
    }

    function testFuzz_RecordIdOf(address p, address a, bytes32 salt) public view {
        vm.assertEq(ledger.recordIdOf(p, a, salt), keccak256(abi.encode(p, a, salt)));
    }

    /// @dev A consent authorizes exactly inside [validFrom, validUntil).
    function testFuzz_ConsentActiveOnlyInsideWindow(uint64 from, uint64 until, uint256 t, uint256 purposeSeed) public {
        from = uint64(bound(from, 0, type(uint40).max - 1));
        until = uint64(bound(until, 0, type(uint40).max));
        if (until != 0 && until <= from) until = from + 1;
        t = bound(t, 0, type(uint40).max);
        bytes32 purpose = _purpose(purposeSeed);

        vm.prank(patient);
        bytes32 id = ledger.grantConsent(patient, provider2, 0, purpose, from, until);
        vm.warp(t);
        bool expected = from <= t && (until == 0 || t < until);
        vm.assertEq(ledger.isAuthorized(patient, provider2, recordId, purpose), expected);
        vm.assertEq(ledger.authorizingConsent(patient, provider2, recordId, purpose), expected ? id : bytes32(0));
    }

    function testFuzz_RevertWhen_WindowIsInvalid(uint64 from, uint64 until) public {
        bool valid = from <= type(uint40).max && until <= type(uint40).max && (until == 0 || until > from);
        vm.assume(!valid);
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, from, until));
        ledger.grantConsent(patient, provider, 0, TREAT, from, until);
    }

    function testFuzz_RevertWhen_PurposeIsNotGrantable(bytes32 purpose) public {
        for (uint256 i; i < 6; ++i) {
            vm.assume(purpose != _purpose(i));
        }
        vm.prank(patient);
        if (purpose == ETREAT) {
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.PurposeNotGrantable.selector, purpose));
        } else {
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownPurpose.selector, purpose));
        }
        ledger.grantConsent(patient, provider, 0, purpose, 0, 0);
    }

    /// @dev Anyone other than the patient or a live delegate cannot grant or revoke.
    function testFuzz_RevertWhen_CallerIsNotPatientOrDelegate(address caller) public {
        vm.assume(caller != patient && caller != delegate);
        _delegate(patient, delegate, 0);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, caller));
        ledger.grantConsent(patient, provider, 0, TREAT, 0, 0);

        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, caller));
        ledger.revokeConsent(id);
    }

    /// @dev Any key can sign for its own address; the signature is good exactly once and only for its signer.
    function testFuzz_GrantBySig(uint256 pk, uint256 otherPk, bytes32 scope, uint256 purposeSeed) public {
        pk = bound(pk, 1, SECP256K1_N - 1);
        otherPk = bound(otherPk, 1, SECP256K1_N - 1);
        vm.assume(pk != otherPk);
        address signer = vm.addr(pk);
        IConsentLedger.ConsentGrant memory g = _grantMsg(signer);
        g.scope = scope;
        g.purpose = _purpose(purposeSeed);

        bytes memory wrong = _signGrant(otherPk, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, signer, vm.addr(otherPk)));
        ledger.grantConsentBySig(g, wrong);

        bytes memory sig = _signGrant(pk, g);
        bytes32 id = ledger.grantConsentBySig(g, sig);
        vm.assertEq(id, _consentId(signer, provider, scope, g.purpose));
        vm.assertEq(ledger.consent(id).patient, signer);
        vm.expectRevert(_nonceUsed(signer, g.nonce));
        ledger.grantConsentBySig(g, sig);
    }

    function testFuzz_RevertWhen_SignatureExpired(uint256 deadline, uint256 t) public {
        t = bound(t, block.timestamp, type(uint64).max);
        deadline = bound(deadline, 0, t - 1);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.deadline = deadline;
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.warp(t);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, deadline, t));
        ledger.grantConsentBySig(g, sig);
    }

    /// @dev Any nonce is usable exactly once, whatever its value, and spends only its own bit.
    function testFuzz_NonceUsableOnce(uint256 nonce) public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = nonce;
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.assertFalse(ledger.nonceUsed(patient, nonce));
        ledger.grantConsentBySig(g, sig);
        vm.assertTrue(ledger.nonceUsed(patient, nonce));
        vm.assertEq(ledger.nonceBitmap(patient, nonce >> 8), uint256(1) << (nonce & 0xff));
        vm.expectRevert(_nonceUsed(patient, nonce));
        ledger.grantConsentBySig(g, sig);
        vm.prank(patient);
        vm.expectRevert(_nonceUsed(patient, nonce));
        ledger.invalidateNonce(nonce);
    }

    /// @dev Distinct nonces used in any order each set their own bit; a repeated one is refused.
    function testFuzz_NonceBitmap(uint256[6] memory nonces) public {
        for (uint256 i; i < nonces.length; ++i) {
            nonces[i] = nonces[i] % 1024; // few words, so several nonces share one
            bool seen;
            for (uint256 j; j < i; ++j) {
                seen = seen || nonces[j] == nonces[i];
            }
            vm.prank(patient);
            if (seen) vm.expectRevert(_nonceUsed(patient, nonces[i]));
            ledger.invalidateNonce(nonces[i]);
        }
        uint256[4] memory words;
        for (uint256 i; i < nonces.length; ++i) {
            words[nonces[i] >> 8] |= uint256(1) << (nonces[i] & 0xff);
        }
        for (uint256 w; w < words.length; ++w) {
            vm.assertEq(ledger.nonceBitmap(patient, w), words[w]);
        }
    }

    /// @dev Two signers' nonces are independent: one spending (or invalidating) a value leaves the other's free.
    function testFuzz_NoncesIndependentAcrossSigners(uint256 pkA, uint256 pkB, uint256 nonce) public {
        pkA = bound(pkA, 1, SECP256K1_N - 1);
        pkB = bound(pkB, 1, SECP256K1_N - 1);
        vm.assume(pkA != pkB);
        address a = vm.addr(pkA);
        address b = vm.addr(pkB);
        IConsentLedger.ConsentGrant memory g = _grantMsg(a);
        g.nonce = nonce;
        ledger.grantConsentBySig(g, _signGrant(pkA, g));
        vm.assertTrue(ledger.nonceUsed(a, nonce));
        vm.assertFalse(ledger.nonceUsed(b, nonce));
        g.patient = b;
        ledger.grantConsentBySig(g, _signGrant(pkB, g));
        vm.assertTrue(ledger.nonceUsed(b, nonce));
        vm.prank(b);
        vm.expectRevert(_nonceUsed(b, nonce));
        ledger.invalidateNonce(nonce);
        vm.prank(a);
        ledger.invalidateNonce(nonce ^ 1);
        vm.assertFalse(ledger.nonceUsed(b, nonce ^ 1));
    }

    /// @dev A delegate's nonce N and the patient's nonce N are spent independently.
    function testFuzz_DelegateNonceIsNotPatients(uint256 nonce) public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = nonce;
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertFalse(ledger.nonceUsed(patient, nonce));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        r.nonce = nonce;
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
        vm.assertTrue(ledger.nonceUsed(patient, nonce));
        vm.assertTrue(ledger.nonceUsed(delegate, nonce));
    }

    /// @dev An access request is accepted exactly for versions 1 to the head, and logged with its version.
    function testFuzz_AccessRequestVersion(uint8 amendments, uint32 version) public {
        amendments = uint8(bound(amendments, 0, 5));
        for (uint256 i; i < amendments; ++i) {
            _amendAsProvider(recordId);
        }
        uint32 head = uint32(amendments) + 1;
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, version, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        if (version == 0 || version > head) {
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, version));
        } else {
            vm.expectEmit(true, true, true, true, address(ledger));
            emit IConsentLedger.AccessLogged(recordId, patient, provider2, version, TREAT, id, _digest(_hash(q)));
        }
        ledger.logAccessBySig(q, sig);
    }

    /// @dev The patient's own request for its record needs no consent exactly for PATRQT: logged with consent 0,
    /// whatever the version in range and the nonce; every other purpose is refused and spends nothing.
    function testFuzz_PatientOwnRequestNeedsPatrqtOnly(bytes32 purpose, bool patrqt, uint256 nonce, uint8 amendments)
        public
    {
        if (patrqt) purpose = PATRQT; // half the runs take the allowed purpose
        amendments = uint8(bound(amendments, 0, 3));
        for (uint256 i; i < amendments; ++i) {
            _amendAsProvider(recordId);
        }
        uint32 version = uint32(bound(nonce, 1, uint256(amendments) + 1));
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, patient, recordId, version, purpose);
        q.nonce = nonce;
        bytes memory sig = _signAccess(PATIENT_PK, q);
        if (purpose == PATRQT) {
            vm.expectEmit(true, true, true, true, address(ledger));
            emit IConsentLedger.AccessLogged(recordId, patient, patient, version, PATRQT, 0, _digest(_hash(q)));
            vm.assertEq(ledger.logAccessBySig(q, sig), 0);
        } else {
            vm.expectRevert(
                abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, patient, purpose)
            );
            ledger.logAccessBySig(q, sig);
        }
        vm.assertEq(ledger.nonceUsed(patient, nonce), purpose == PATRQT);
    }

    /// @dev PATRQT without consent is refused for any accessor but the patient, an onboarded provider included,
    /// and its signature of the patient's own request is not the patient's (a live delegate's included).
    function testFuzz_PatrqtIsThePatientsOnly(uint256 pk, bool onboard, bool delegated) public {
        pk = bound(pk, 1, SECP256K1_N - 1);
        address accessor = vm.addr(pk);
        vm.assume(accessor != patient);
        if (onboard) {
            vm.prank(admin);
            ledger.onboardProvider(accessor, "Any Clinic");
        }
        if (delegated) _delegate(patient, accessor, 0);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, accessor, recordId, 1, PATRQT);
        bytes memory sig = _signAccess(pk, q);
        vm.expectRevert(
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, accessor, PATRQT)
        );
        ledger.logAccessBySig(q, sig);
        IConsentLedger.AccessRequest memory own = _accessMsg(patient, patient, recordId, 1, PATRQT);
        sig = _signAccess(pk, own);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, accessor));
        ledger.logAccessBySig(own, sig);
        vm.assertFalse(ledger.nonceUsed(accessor, q.nonce));
        vm.assertFalse(ledger.nonceUsed(patient, own.nonce));
    }

    /// @dev A signed anchor of any CID makes the same record as a direct one would.
    function testFuzz_AnchorRecordBySig(bytes32 salt, bytes calldata cid, bytes32 commitment) public {
        vm.assume(cid.length != 0);
        IConsentLedger.RecordAnchor memory a = _anchorMsg(stranger, provider2, salt);
        a.cid = cid;
        a.commitment = commitment;
        bytes32 id = ledger.anchorRecordBySig(a, _signAnchor(PROVIDER2_PK, a));
        vm.assertEq(id, keccak256(abi.encode(stranger, provider2, salt)));
        vm.assertEq(_head(stranger, id), _firstVersionHash(id, stranger, LABORATORY, keccak256(cid), commitment));
    }

    /// @dev A delegate's signature is accepted exactly while the delegation is live.
    function testFuzz_DelegateSignatureLiveness(uint64 validUntil, uint256 t) public {
        validUntil = uint64(bound(validUntil, 0, type(uint40).max));
        t = bound(t, block.timestamp, type(uint40).max);
        _delegate(patient, delegate, validUntil);
        vm.warp(t);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(DELEGATE_PK, g);
        bool live = validUntil == 0 || t < validUntil;
        vm.assertEq(ledger.isLiveDelegate(patient, delegate), live);
        if (!live) {
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, delegate));
        }
        ledger.grantConsentBySig(g, sig);
    }

    /// @dev Each amendment chains to the previous head; any other previousHash is refused.
    function testFuzz_VersionChain(uint8 amendments, bytes32 commitment, bytes32 wrongPrevious) public {
        amendments = uint8(bound(amendments, 1, 20));
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.assume(wrongPrevious != head);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.StaleVersion.selector, recordId, wrongPrevious, head));
        ledger.amendRecord(patient, recordId, CID, commitment, wrongPrevious);
        for (uint32 v = 2; v <= uint32(amendments) + 1; ++v) {
            bytes32 expected =
                keccak256(abi.encode(recordId, v, patient, provider, LABORATORY, keccak256(CID), commitment, head));
            vm.prank(provider);
            vm.assertEq(ledger.amendRecord(patient, recordId, CID, commitment, head), v);
            (IConsentLedger.Record memory r, bytes32 newHead) = ledger.record(patient, recordId);
            vm.assertEq(newHead, expected);
            vm.assertEq(r.version, v);
            head = newHead;
        }
    }

    function testFuzz_AnchorRecord(address p, bytes32 salt, bytes calldata cid, bytes32 commitment, uint8 catSeed)
        public
    {
        vm.assume(p != address(0) && cid.length != 0);
        uint16 index = uint16(bound(catSeed, 1, 4));
        bytes32 category = ledger.categoryId(index);
        vm.prank(provider2);
        bytes32 id = ledger.anchorRecord(p, category, salt, cid, commitment);
        vm.assertEq(id, keccak256(abi.encode(p, provider2, salt)));
        (IConsentLedger.Record memory r, bytes32 head) = ledger.record(p, id);
        vm.assertEq(r.author, provider2);
        vm.assertEq(r.version, 1);
        vm.assertEq(r.categoryIndex, index);
        vm.assertFalse(r.erased);
        vm.assertEq(head, _firstVersionHash(id, p, category, keccak256(cid), commitment));
    }

    function _firstVersionHash(bytes32 id, address p, bytes32 category, bytes32 cidHash, bytes32 commitment)
        internal
        view
        returns (bytes32)
    {
        return keccak256(abi.encode(id, uint32(1), p, provider2, category, cidHash, commitment, bytes32(0)));
    }

    function testFuzz_DisclosureBatches(uint64[4] memory steps) public {
        vm.startPrank(custodian);
        uint64 size;
        for (uint256 i; i < steps.length; ++i) {
            uint64 to = uint64(bound(steps[i], uint256(size) + 1, uint256(size) + 1_000_000));
            bytes32 root = keccak256(abi.encode(i));
            if (size != 0) {
                vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, size, size - 1, to));
                ledger.anchorDisclosureBatch(root, size - 1, to);
            }
            vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, size, size, size));
            ledger.anchorDisclosureBatch(root, size, size);
            ledger.anchorDisclosureBatch(root, size, to);
            (bytes32 headRoot, uint64 headSize) = ledger.disclosureBatchHead();
            vm.assertEq(headRoot, root);
            vm.assertEq(headSize, to);
            size = to;
        }
        vm.stopPrank();
    }

    /// @dev Consent state round-trips through the packed slot for every in-range window.
    function testFuzz_ConsentPacking(address grantee, bytes32 scope, uint64 from, uint64 until) public {
        vm.assume(grantee != address(0));
        from = uint64(bound(from, 0, type(uint40).max - 1));
        until = uint64(bound(until, from + 1, type(uint40).max));
        vm.prank(patient);
        bytes32 id = ledger.grantConsent(patient, grantee, scope, PUBHLTH, from, until);
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertEq(c.patient, patient);
        vm.assertEq(c.validFrom, from);
        vm.assertEq(c.validUntil, until);
        vm.assertFalse(c.revoked);
        vm.assertFalse(c.revokedByPatient);
        vm.prank(patient);
        ledger.revokeConsent(id);
        c = ledger.consent(id);
        vm.assertEq(c.patient, patient);
        vm.assertTrue(c.revoked);
        vm.assertTrue(c.revokedByPatient);
        vm.assertEq(c.validFrom, from);
        vm.assertEq(c.validUntil, until);
        // a re-grant clears both flags and keeps the window
        vm.prank(patient);
        ledger.grantConsent(patient, grantee, scope, PUBHLTH, from, until);
        c = ledger.consent(id);
        vm.assertFalse(c.revoked);
        vm.assertFalse(c.revokedByPatient);
        vm.assertEq(c.validUntil, until);
        // a delegate's revocation sets only `revoked`
        _delegate(patient, delegate, 0);
        vm.prank(delegate);
        ledger.revokeConsent(id);
        c = ledger.consent(id);
        vm.assertTrue(c.revoked);
        vm.assertFalse(c.revokedByPatient);
        vm.assertEq(c.validFrom, from);
        vm.assertEq(c.validUntil, until);
    }
}
