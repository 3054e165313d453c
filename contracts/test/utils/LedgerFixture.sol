// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../../src/ConsentLedger.sol";
import {IConsentLedger} from "../../src/IConsentLedger.sol";
import {Test} from "./Test.sol";

/// @dev Common deployment and helpers: an admin, a custodian, two onboarded providers, a patient, a delegate
/// and a stranger, all with known keys; EIP-712 signing recomputed independently from the type strings (the
/// contract's own hashing is never used to produce a test signature).
abstract contract LedgerFixture is Test {
    string internal constant GRANT_TYPE =
        "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)";
    string internal constant REVOKE_TYPE =
        "ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)";
    string internal constant DELEGATE_TYPE =
        "DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)";
    string internal constant DELEGATE_REVOKE_TYPE =
        "DelegateRevoke(address patient,address delegate,uint256 nonce,uint256 deadline)";
    string internal constant ANCHOR_TYPE =
        "RecordAnchor(address patient,address author,bytes32 category,bytes32 salt,bytes cid,bytes32 commitment,uint256 nonce,uint256 deadline)";
    string internal constant AMEND_TYPE =
        "RecordAmend(address patient,address author,bytes32 recordId,bytes cid,bytes32 commitment,bytes32 previousHash,uint256 nonce,uint256 deadline)";
    string internal constant ACCESS_TYPE =
        "AccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 purpose,uint256 nonce,uint256 deadline)";
    string internal constant EMERGENCY_TYPE =
        "EmergencyAccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 reasonHash,uint256 nonce,uint256 deadline)";
    string internal constant ERASE_TYPE =
        "RecordErase(address patient,bytes32 recordId,uint256 nonce,uint256 deadline)";
    string internal constant KEY_TYPE =
        "EncryptionKey(address account,bytes32 publicKey,uint256 nonce,uint256 deadline)";
    string internal constant DOMAIN_TYPE =
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

    bytes32 internal constant TREAT = "TREAT";
    bytes32 internal constant HPAYMT = "HPAYMT";
    bytes32 internal constant HOPERAT = "HOPERAT";
    bytes32 internal constant HRESCH = "HRESCH";
    bytes32 internal constant PATRQT = "PATRQT";
    bytes32 internal constant PUBHLTH = "PUBHLTH";
    bytes32 internal constant ETREAT = "ETREAT";

    bytes32 internal constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");
    bytes32 internal constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");
    bytes32 internal constant CUSTODIAN_ROLE = keccak256("CUSTODIAN_ROLE");
    bytes32 internal constant EMERGENCY_ROLE = keccak256("EMERGENCY_ROLE");
    bytes32 internal constant DEFAULT_ADMIN_ROLE = 0x00;

    bytes32 internal constant LABORATORY = keccak256("laboratory");
    bytes32 internal constant IMAGING = keccak256("imaging");
    bytes32 internal constant MEDICATION = keccak256("medication");
    bytes32 internal constant CLINICAL_NOTE = keccak256("clinical-note");

    bytes internal constant CID = hex"01551220c3c4733ec8affd06cf9e9ff50ffc6bcd2ec85a6170004bb709669c31de94391a";
    bytes32 internal constant COMMITMENT = keccak256("document ciphertext");
    bytes32 internal constant REASON = keccak256("unconscious patient, ER admission 4711");
    bytes32 internal constant PUBLIC_KEY = keccak256("an X25519 public key");

    uint256 internal constant ADMIN_PK = 0xAD;
    uint256 internal constant CUSTODIAN_PK = 0xC0;
    uint256 internal constant PROVIDER_PK = 0xD1;
    uint256 internal constant PROVIDER2_PK = 0xD2;
    uint256 internal constant PATIENT_PK = 0xBA7137;
    uint256 internal constant DELEGATE_PK = 0xDE1E6A7E;
    uint256 internal constant STRANGER_PK = 0x57A4;

    ConsentLedger internal ledger;
    address internal admin;
    address internal custodian;
    address internal provider;
    address internal provider2;
    address internal patient;
    address internal delegate;
    address internal stranger;

    /// @dev Source of fresh nonces for the message builders (unordered nonces: any unused value works).
    uint256 private _nonceSeq = 1000;

    function setUp() public virtual {
        admin = vm.addr(ADMIN_PK);
        custodian = vm.addr(CUSTODIAN_PK);
        provider = vm.addr(PROVIDER_PK);
        provider2 = vm.addr(PROVIDER2_PK);
        patient = vm.addr(PATIENT_PK);
        delegate = vm.addr(DELEGATE_PK);
        stranger = vm.addr(STRANGER_PK);
        vm.label(admin, "admin");
        vm.label(custodian, "custodian");
        vm.label(provider, "provider");
        vm.label(provider2, "provider2");
        vm.label(patient, "patient");
        vm.label(delegate, "delegate");
        vm.label(stranger, "stranger");

        ledger = new ConsentLedger(admin);
        vm.label(address(ledger), "ledger");
        vm.startPrank(admin);
        ledger.grantRole(CUSTODIAN_ROLE, custodian);
        ledger.onboardProvider(provider, "General Hospital");
        ledger.onboardProvider(provider2, "Imaging Clinic");
        vm.stopPrank();
    }

    // ------------------------------------------------------------ actions

    function _anchor(address patient_, bytes32 salt) internal returns (bytes32) {
        vm.prank(provider);
        return ledger.anchorRecord(patient_, LABORATORY, salt, CID, COMMITMENT);
    }

    function _grant(address patient_, address grantee, bytes32 scope, bytes32 purpose) internal returns (bytes32) {
        vm.prank(patient_);
        return ledger.grantConsent(patient_, grantee, scope, purpose, 0, 0);
    }

    function _delegate(address patient_, address delegate_, uint64 validUntil) internal {
        vm.prank(patient_);
        ledger.grantDelegate(delegate_, validUntil);
    }

    /// @dev The head version hash of a record.
    function _head(address patient_, bytes32 recordId) internal view returns (bytes32 head) {
        (, head) = ledger.record(patient_, recordId);
    }

    /// @dev The next version of `recordId` of `patient` by `provider` (its author), chained to the head.
    function _amendAsProvider(bytes32 recordId) internal returns (uint32) {
        bytes32 head = _head(patient, recordId); // read before the prank, which the next call consumes
        vm.prank(provider);
        return ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
    }

    function _nextNonce() internal returns (uint256) {
        return _nonceSeq++;
    }

    // ------------------------------------------------------------ EIP-712

    function _domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(DOMAIN_TYPE)), keccak256("ConsentLedger"), keccak256("1"), chainId, verifyingContract
            )
        );
    }

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return _digestFor(address(ledger), block.chainid, structHash);
    }

    function _digestFor(address verifyingContract, uint256 chainId, bytes32 structHash)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encodePacked("\x19\x01", _domainSeparator(verifyingContract, chainId), structHash));
    }

    function _hash(IConsentLedger.ConsentGrant memory g) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(GRANT_TYPE)),
                g.patient,
                g.grantee,
                g.scope,
                g.purpose,
                g.validFrom,
                g.validUntil,
                g.nonce,
                g.deadline
            )
        );
    }

    function _hash(IConsentLedger.ConsentRevoke memory r) internal pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(bytes(REVOKE_TYPE)), r.patient, r.consentId, r.nonce, r.deadline));
    }

    function _hash(IConsentLedger.DelegateGrant memory d) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(keccak256(bytes(DELEGATE_TYPE)), d.patient, d.delegate, d.validUntil, d.nonce, d.deadline)
        );
    }

    function _hash(IConsentLedger.DelegateRevoke memory d) internal pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(bytes(DELEGATE_REVOKE_TYPE)), d.patient, d.delegate, d.nonce, d.deadline));
    }

    function _hash(IConsentLedger.RecordAnchor memory a) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(ANCHOR_TYPE)),
                a.patient,
                a.author,
                a.category,
                a.salt,
                keccak256(a.cid),
                a.commitment,
                a.nonce,
                a.deadline
            )
        );
    }

    function _hash(IConsentLedger.RecordAmend memory a) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(AMEND_TYPE)),
                a.patient,
                a.author,
                a.recordId,
                keccak256(a.cid),
                a.commitment,
                a.previousHash,
                a.nonce,
                a.deadline
            )
        );
    }

    function _hash(IConsentLedger.AccessRequest memory q) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(ACCESS_TYPE)),
                q.patient,
                q.accessor,
                q.recordId,
                q.version,
                q.purpose,
                q.nonce,
                q.deadline
            )
        );
    }

    function _hash(IConsentLedger.EmergencyAccessRequest memory q) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(EMERGENCY_TYPE)),
                q.patient,
                q.accessor,
                q.recordId,
                q.version,
                q.reasonHash,
                q.nonce,
                q.deadline
            )
        );
    }

    function _hash(IConsentLedger.RecordErase memory e) internal pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(bytes(ERASE_TYPE)), e.patient, e.recordId, e.nonce, e.deadline));
    }

    function _hash(IConsentLedger.EncryptionKey memory k) internal pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(bytes(KEY_TYPE)), k.account, k.publicKey, k.nonce, k.deadline));
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev A signature of `structHash` for another deployment (`verifyingContract`) or another chain.
    function _signFor(uint256 pk, address verifyingContract, uint256 chainId, bytes32 structHash)
        internal
        pure
        returns (bytes memory)
    {
        return _sign(pk, _digestFor(verifyingContract, chainId, structHash));
    }

    /// @dev The address the ledger recovers from `sig` over `structHash` when its domain is `domainSeparator`
    /// (what {InvalidSigner} reports for a signature made for another domain).
    function _recovered(bytes32 structHash, bytes32 domainSeparator, bytes memory sig) internal pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return ecrecover(keccak256(abi.encodePacked("\x19\x01", domainSeparator, structHash)), v, r, s);
    }

    function _signGrant(uint256 pk, IConsentLedger.ConsentGrant memory g) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(g)));
    }

    function _signRevoke(uint256 pk, IConsentLedger.ConsentRevoke memory r) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(r)));
    }

    function _signDelegate(uint256 pk, IConsentLedger.DelegateGrant memory d) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(d)));
    }

    function _signDelegateRevoke(uint256 pk, IConsentLedger.DelegateRevoke memory d)
        internal
        view
        returns (bytes memory)
    {
        return _sign(pk, _digest(_hash(d)));
    }

    function _signAnchor(uint256 pk, IConsentLedger.RecordAnchor memory a) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(a)));
    }

    function _signAmend(uint256 pk, IConsentLedger.RecordAmend memory a) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(a)));
    }

    function _signAccess(uint256 pk, IConsentLedger.AccessRequest memory q) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(q)));
    }

    function _signEmergency(uint256 pk, IConsentLedger.EmergencyAccessRequest memory q)
        internal
        view
        returns (bytes memory)
    {
        return _sign(pk, _digest(_hash(q)));
    }

    function _signErase(uint256 pk, IConsentLedger.RecordErase memory e) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(e)));
    }

    function _signKey(uint256 pk, IConsentLedger.EncryptionKey memory k) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(k)));
    }

    // ------------------------------------------------------------ messages (fresh nonce, 1 hour deadline)

    /// @dev A grant by `patient_` to `provider`, all records, TREAT, no window.
    function _grantMsg(address patient_) internal returns (IConsentLedger.ConsentGrant memory) {
        return IConsentLedger.ConsentGrant({
            patient: patient_,
            grantee: provider,
            scope: bytes32(0),
            purpose: TREAT,
            validFrom: 0,
            validUntil: 0,
            nonce: _nextNonce(),
            deadline: block.timestamp + 1 hours
        });
    }

    function _revokeMsg(address patient_, bytes32 consentId) internal returns (IConsentLedger.ConsentRevoke memory) {
        return IConsentLedger.ConsentRevoke({
            patient: patient_, consentId: consentId, nonce: _nextNonce(), deadline: block.timestamp + 1 hours
        });
    }

    function _delegateMsg(address patient_, address delegate_, uint64 validUntil)
        internal
        returns (IConsentLedger.DelegateGrant memory)
    {
        return IConsentLedger.DelegateGrant({
            patient: patient_,
            delegate: delegate_,
            validUntil: validUntil,
            nonce: _nextNonce(),
            deadline: block.timestamp + 1 hours
        });
    }

    function _delegateRevokeMsg(address patient_, address delegate_)
        internal
        returns (IConsentLedger.DelegateRevoke memory)
    {
        return IConsentLedger.DelegateRevoke({
            patient: patient_, delegate: delegate_, nonce: _nextNonce(), deadline: block.timestamp + 1 hours
        });
    }

    /// @dev A laboratory record of `patient_` by `author`.
    function _anchorMsg(address patient_, address author, bytes32 salt)
        internal
        returns (IConsentLedger.RecordAnchor memory)
    {
        return IConsentLedger.RecordAnchor({
            patient: patient_,
            author: author,
            category: LABORATORY,
            salt: salt,
            cid: CID,
            commitment: COMMITMENT,
            nonce: _nextNonce(),
            deadline: block.timestamp + 1 hours
        });
    }

    /// @dev The next version of `recordId` by `author`, chained to the current head.
    function _amendMsg(address patient_, address author, bytes32 recordId)
        internal
        returns (IConsentLedger.RecordAmend memory)
    {
        return IConsentLedger.RecordAmend({
            patient: patient_,
            author: author,
            recordId: recordId,
            cid: CID,
            commitment: keccak256("next version"),
            previousHash: _head(patient_, recordId),
            nonce: _nextNonce(),
            deadline: block.timestamp + 1 hours
        });
    }

    function _accessMsg(address patient_, address accessor, bytes32 recordId, uint32 version, bytes32 purpose)
        internal
        returns (IConsentLedger.AccessRequest memory)
    {
        return IConsentLedger.AccessRequest({
            patient: patient_,
            accessor: accessor,
            recordId: recordId,
            version: version,
            purpose: purpose,
            nonce: _nextNonce(),
            deadline: block.timestamp + 1 hours
        });
    }

    function _emergencyMsg(address patient_, address accessor, bytes32 recordId, uint32 version)
        internal
        returns (IConsentLedger.EmergencyAccessRequest memory)
    {
        return IConsentLedger.EmergencyAccessRequest({
            patient: patient_,
            accessor: accessor,
            recordId: recordId,
            version: version,
            reasonHash: REASON,
            nonce: _nextNonce(),
            deadline: block.timestamp + 1 hours
        });
    }

    function _eraseMsg(address patient_, bytes32 recordId) internal returns (IConsentLedger.RecordErase memory) {
        return IConsentLedger.RecordErase({
            patient: patient_, recordId: recordId, nonce: _nextNonce(), deadline: block.timestamp + 1 hours
        });
    }

    function _keyMsg(address account, bytes32 publicKey) internal returns (IConsentLedger.EncryptionKey memory) {
        return IConsentLedger.EncryptionKey({
            account: account, publicKey: publicKey, nonce: _nextNonce(), deadline: block.timestamp + 1 hours
        });
    }

    // ------------------------------------------------------------ misc

    function _consentId(address patient_, address grantee, bytes32 scope, bytes32 purpose)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(patient_, grantee, scope, purpose));
    }

    function _invalidSigner(address party, address signer) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, party, signer);
    }

    function _nonceUsed(address signer, uint256 nonce) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(IConsentLedger.NonceAlreadyUsed.selector, signer, nonce);
    }
}
