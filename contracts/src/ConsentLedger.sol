// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IConsentLedger} from "./IConsentLedger.sol";

/// @title ConsentLedger
/// @notice Healthcare consent and record-audit ledger for a permissioned EVM chain, version 2: "trust no
/// operator" (docs/architecture.md). Every act is sent by the party it names or carried by an EIP-712 signature
/// of that party, relayed by anyone. See {IConsentLedger} for the identifiers. Roles:
///
/// - `DEFAULT_ADMIN_ROLE`: registers record categories, onboards/suspends providers, manages every other role.
///   It cannot act in a patient's or a provider's name.
/// - `PROVIDER_ROLE`: anchors and amends its own records (as `msg.sender` or by its signature); can be the
///   grantee of a consent and the accessor of a signed access request. Granted by {onboardProvider}. A
///   provider is *active* while it holds the role and is not suspended.
/// - `CUSTODIAN_ROLE`: the hub's batch anchorer. Its only power is {anchorDisclosureBatch}, the Merkle root over
///   the off-chain log of signed access requests.
/// - `EMERGENCY_ROLE`: lets an active provider sign {logEmergencyAccessBySig} (break-glass, ETREAT).
/// - `AUDITOR_ROLE`: names the consortium's auditors; it has no power in this contract.
///
/// Who may sign what: a patient, or a *live delegate* of the patient (guardian, proxy), grants and revokes
/// consents and erases records; only the patient manages its delegations; a record's author anchors and amends
/// it; an accessor signs its own access requests (a patient is the accessor of its own PATRQT request, which needs
/// no consent); an account publishes its own encryption key. A signature is 65-byte ECDSA, or valid under ERC-1271
/// for a contract party (a delegate signs by ECDSA only).
///
/// Nonces are unordered and per signer, a bitmap as in Uniswap's Permit2: nonce `n` of `signer` is bit
/// `n % 256` of word `n / 256`. Every signed message consumes the nonce of whoever signed it (a delegate's
/// signature its own nonce, never the patient's); {invalidateNonce} cancels a signed message before it is used.
contract ConsentLedger is IConsentLedger, AccessControl, EIP712 {
    // ---------------------------------------------------------------- constants

    bytes32 public constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");
    bytes32 public constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");
    bytes32 public constant CUSTODIAN_ROLE = keccak256("CUSTODIAN_ROLE");
    bytes32 public constant EMERGENCY_ROLE = keccak256("EMERGENCY_ROLE");

    /// @dev HL7 v3 PurposeOfUse codes (ASCII, left-aligned, zero-padded).
    bytes32 public constant TREAT = "TREAT";
    bytes32 public constant HPAYMT = "HPAYMT";
    bytes32 public constant HOPERAT = "HOPERAT";
    bytes32 public constant HRESCH = "HRESCH";
    bytes32 public constant PATRQT = "PATRQT";
    bytes32 public constant PUBHLTH = "PUBHLTH";
    /// @dev Emergency treatment: never grantable, only reachable through {logEmergencyAccessBySig}.
    bytes32 public constant ETREAT = "ETREAT";

    bytes32 public constant CONSENT_GRANT_TYPEHASH = keccak256(
        "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant CONSENT_REVOKE_TYPEHASH =
        keccak256("ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)");
    bytes32 public constant DELEGATE_GRANT_TYPEHASH =
        keccak256("DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)");
    bytes32 public constant DELEGATE_REVOKE_TYPEHASH =
        keccak256("DelegateRevoke(address patient,address delegate,uint256 nonce,uint256 deadline)");
    bytes32 public constant RECORD_ANCHOR_TYPEHASH = keccak256(
        "RecordAnchor(address patient,address author,bytes32 category,bytes32 salt,bytes cid,bytes32 commitment,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant RECORD_AMEND_TYPEHASH = keccak256(
        "RecordAmend(address patient,address author,bytes32 recordId,bytes cid,bytes32 commitment,bytes32 previousHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant ACCESS_REQUEST_TYPEHASH = keccak256(
        "AccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 purpose,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant EMERGENCY_ACCESS_REQUEST_TYPEHASH = keccak256(
        "EmergencyAccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 reasonHash,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant RECORD_ERASE_TYPEHASH =
        keccak256("RecordErase(address patient,bytes32 recordId,uint256 nonce,uint256 deadline)");
    bytes32 public constant ENCRYPTION_KEY_TYPEHASH =
        keccak256("EncryptionKey(address account,bytes32 publicKey,uint256 nonce,uint256 deadline)");

    // Mirrors of AccessControl kept by _grantRole/_revokeRole, and the suspension, in one flags byte per account:
    // "active provider" and "active emergency provider" are each a single SLOAD.
    uint8 private constant _PROVIDER = 1; // holds PROVIDER_ROLE
    uint8 private constant _SUSPENDED = 2;
    uint8 private constant _EMERGENCY = 4; // holds EMERGENCY_ROLE

    // The packed `Consent` slot: patient (bits 0-159) | validFrom (160-199) | validUntil (200-239) |
    // revoked (240-247) | revokedByPatient (248-255).
    uint256 private constant _ADDRESS_MASK = (1 << 160) - 1;
    uint256 private constant _REVOKED = 1 << 240;
    uint256 private constant _REVOKED_BY_PATIENT = 1 << 248;
    // The packed `Record` head slot: author (0-159) | version (160-191) | categoryIndex (192-207) | erased (208-215).
    uint256 private constant _ERASED = 1 << 208;

    // ---------------------------------------------------------------- errors

    /// @dev {setEncryptionKey} or {setEncryptionKeyBySig} with a zero key: a zero key would read as "no key
    /// published", so it is refused rather than stored.
    error EmptyPublicKey();

    // ---------------------------------------------------------------- storage

    /// @dev One slot. `active` distinguishes a granted delegation from the zero value.
    struct Delegation {
        bool active;
        uint64 validUntil;
    }

    /// @dev Two consecutive slots: the packed head metadata and the head version hash.
    struct RecordState {
        Record head;
        bytes32 versionHash;
    }

    /// @dev A bytes32 root and a uint64 size cannot share one slot: two consecutive slots.
    struct BatchHead {
        bytes32 root;
        uint64 size;
    }

    mapping(bytes32 consentId => Consent) private _consents;
    mapping(address patient => mapping(address delegate => Delegation)) private _delegations;
    mapping(address patient => mapping(bytes32 recordId => RecordState)) private _records;
    mapping(bytes32 categoryId => uint16 index) private _categoryIndexes;
    mapping(uint16 index => bytes32 categoryId) private _categoryIds;
    uint16 private _categoryCount;
    mapping(address account => uint8 flags) private _providerFlags;
    mapping(address provider => string name) private _providerNames;
    BatchHead private _batchHead;
    mapping(address signer => mapping(uint256 wordPos => uint256 bitmap)) private _nonceBitmaps;
    mapping(address account => bytes32 publicKey) private _encryptionKeys;

    // ---------------------------------------------------------------- construction

    /// @param admin receives `DEFAULT_ADMIN_ROLE`. The categories "laboratory", "imaging", "medication" and
    /// "clinical-note" are registered with indexes 1 to 4.
    constructor(address admin) EIP712("ConsentLedger", "1") {
        if (admin == address(0)) revert ZeroAddress();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _registerCategory("laboratory");
        _registerCategory("imaging");
        _registerCategory("medication");
        _registerCategory("clinical-note");
    }

    // ---------------------------------------------------------------- administration

    /**
     * @notice Registers the record category `code`; its id is `keccak256(bytes(code))`, its index the next one
     * (starting at 1).
     *
     * Requirements:
     *
     * - the caller has `DEFAULT_ADMIN_ROLE`.
     * - `code` is not empty and not registered yet.
     *
     * Emits {CategoryRegistered}.
     */
    function registerCategory(string calldata code)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (bytes32 categoryId_)
    {
        return _registerCategory(code);
    }

    /**
     * @notice Grants `PROVIDER_ROLE` to `provider` and records its display `name` (again: renames it). Does not
     * lift a suspension.
     *
     * Requirements:
     *
     * - the caller has `DEFAULT_ADMIN_ROLE`.
     * - `provider` is not the zero address.
     *
     * Emits {RoleGranted} (if the role is new) and {ProviderOnboarded}.
     */
    function onboardProvider(address provider, string calldata name) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (provider == address(0)) revert ZeroAddress();
        _grantRole(PROVIDER_ROLE, provider);
        _providerNames[provider] = name;
        emit ProviderOnboarded(provider, name);
    }

    /**
     * @notice Suspends `provider`: it stops being an active provider (cannot anchor/amend records, is not
     * authorized by any consent, cannot log an emergency access) until {reinstateProvider}. Its roles and
     * consents are kept.
     *
     * Requirements:
     *
     * - the caller has `DEFAULT_ADMIN_ROLE`.
     * - `provider` is not suspended.
     *
     * Emits {ProviderSuspended}.
     */
    function suspendProvider(address provider) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint8 flags = _providerFlags[provider];
        if (flags & _SUSPENDED != 0) revert AlreadySuspended(provider);
        _providerFlags[provider] = flags | _SUSPENDED;
        emit ProviderSuspended(provider, _msgSender());
    }

    /**
     * @notice Lifts the suspension of `provider`.
     *
     * Requirements:
     *
     * - the caller has `DEFAULT_ADMIN_ROLE`.
     * - `provider` is suspended.
     *
     * Emits {ProviderReinstated}.
     */
    function reinstateProvider(address provider) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint8 flags = _providerFlags[provider];
        if (flags & _SUSPENDED == 0) revert NotSuspended(provider);
        _providerFlags[provider] = flags & ~_SUSPENDED;
        emit ProviderReinstated(provider, _msgSender());
    }

    // ---------------------------------------------------------------- consent

    /**
     * @notice Grants `grantee` consent to access `patient`'s records in `scope` for `purpose` during
     * `[validFrom, validUntil)` (`validUntil == 0`: no expiry). Granting again for the same
     * (patient, grantee, scope, purpose) replaces the window and clears a revocation; a delegate cannot undo a
     * revocation the patient made. Does not use a nonce.
     *
     * Requirements:
     *
     * - the caller is `patient` or a live delegate of `patient`.
     * - `patient` and `grantee` are not the zero address.
     * - `purpose` is a known, grantable purpose (not ETREAT).
     * - both bounds fit in uint40 and `validUntil == 0 || validUntil > validFrom`.
     * - if the caller is a delegate: the consent was not last revoked by the patient.
     *
     * Emits {ConsentGranted} with the caller as signer.
     */
    function grantConsent(
        address patient,
        address grantee,
        bytes32 scope,
        bytes32 purpose,
        uint64 validFrom,
        uint64 validUntil
    ) external returns (bytes32 consentId) {
        _checkGrant(patient, grantee, purpose, validFrom, validUntil);
        address caller = _msgSender();
        _checkPatientOrLiveDelegate(patient, caller);
        return _grantConsent(patient, grantee, scope, purpose, validFrom, validUntil, caller);
    }

    /**
     * @notice Same as {grantConsent}, authorized by an EIP-712 `ConsentGrant` signature of the patient, of a
     * live delegate of the patient, or (for a contract patient) valid under ERC-1271. Anyone may relay it.
     *
     * Requirements:
     *
     * - `block.timestamp <= grant.deadline`.
     * - the grant is valid as in {grantConsent}.
     * - `signature` is the patient's or a live delegate's (see above).
     * - `grant.nonce` of the signer is unused (it is consumed: the delegate's nonce if a delegate signed).
     * - if a delegate signed: the consent was not last revoked by the patient.
     *
     * Emits {ConsentGranted} with the signer (the patient for an ERC-1271 signature).
     */
    function grantConsentBySig(ConsentGrant calldata grant, bytes calldata signature)
        external
        returns (bytes32 consentId)
    {
        ConsentGrant memory g = grant; // one validated copy: each field is read twice or more below
        _checkDeadline(g.deadline);
        _checkGrant(g.patient, g.grantee, g.purpose, g.validFrom, g.validUntil);
        bytes32 digest = _hashTypedDataV4(_structHash(grant));
        address signer = _checkPatientOrDelegateSignature(g.patient, digest, signature);
        _useNonce(signer, g.nonce);
        return _grantConsent(g.patient, g.grantee, g.scope, g.purpose, g.validFrom, g.validUntil, signer);
    }

    /**
     * @notice Revokes consent `consentId`. A revocation by the patient can only be undone by the patient; one by
     * a delegate, by either, and the patient may revoke it again to make it their own. Does not use a nonce.
     *
     * Requirements:
     *
     * - the consent exists and is not revoked, or (the caller being its patient) revoked by a delegate only.
     * - the caller is its patient or a live delegate of its patient.
     *
     * Emits {ConsentRevoked} with the caller as signer.
     */
    function revokeConsent(bytes32 consentId) external {
        Consent storage stored = _consents[consentId];
        uint256 word = _loadConsentRevocable(stored, consentId);
        address patient = _patientOf(word);
        address caller = _msgSender();
        _checkPatientOrLiveDelegate(patient, caller);
        _checkRevocableBy(word, consentId, caller == patient);
        _revokeConsent(stored, word, consentId, patient, caller);
    }

    /**
     * @notice Same as {revokeConsent}, authorized by an EIP-712 `ConsentRevoke` signature (see
     * {grantConsentBySig} for who may sign).
     *
     * Requirements:
     *
     * - `block.timestamp <= revoke.deadline`.
     * - the consent exists, belongs to `revoke.patient` and is not revoked, or (signed by the patient) revoked
     *   by a delegate only.
     * - `signature` is the patient's or a live delegate's.
     * - `revoke.nonce` of the signer is unused (it is consumed).
     *
     * Emits {ConsentRevoked} with the signer.
     */
    function revokeConsentBySig(ConsentRevoke calldata revoke, bytes calldata signature) external {
        _checkDeadline(revoke.deadline);
        bytes32 consentId = revoke.consentId;
        address patient = revoke.patient;
        Consent storage stored = _consents[consentId];
        uint256 word = _consentWord(stored);
        if (patient == address(0) || _patientOf(word) != patient) revert UnknownConsent(consentId);
        if (word & _REVOKED_BY_PATIENT != 0) revert ConsentAlreadyRevoked(consentId);
        bytes32 digest = _hashTypedDataV4(_structHash(revoke));
        address signer = _checkPatientOrDelegateSignature(patient, digest, signature);
        _checkRevocableBy(word, consentId, signer == patient);
        _useNonce(signer, revoke.nonce);
        _revokeConsent(stored, word, consentId, patient, signer);
    }

    /**
     * @notice Makes `delegate` a delegate of the caller (the patient) until `validUntil` (exclusive; 0 = no
     * expiry), replacing any previous delegation of that delegate. A `validUntil` in the past is accepted and
     * stored: the delegation is then simply not live (this ends an existing delegation early without
     * {DelegateRevoked}). Does not use a nonce.
     *
     * Requirements:
     *
     * - `delegate` is not the zero address and not the caller.
     *
     * Emits {DelegateGranted}.
     */
    function grantDelegate(address delegate, uint64 validUntil) external {
        _grantDelegate(_msgSender(), delegate, validUntil);
    }

    /**
     * @notice Same as {grantDelegate}, authorized by an EIP-712 `DelegateGrant` signature of the patient itself
     * (or ERC-1271 for a contract patient); delegates cannot sign it.
     *
     * Requirements:
     *
     * - `block.timestamp <= grant.deadline`.
     * - `grant.patient` is not the zero address; `grant.delegate` is valid as in {grantDelegate}.
     * - `signature` is the patient's.
     * - `grant.nonce` of the patient is unused (it is consumed).
     *
     * Emits {DelegateGranted}.
     */
    function grantDelegateBySig(DelegateGrant calldata grant, bytes calldata signature) external {
        _checkDeadline(grant.deadline);
        address patient = grant.patient;
        if (patient == address(0)) revert ZeroAddress();
        address delegate = grant.delegate;
        uint64 validUntil = grant.validUntil;
        _checkSignature(patient, _hashTypedDataV4(_structHash(grant)), signature);
        _useNonce(patient, grant.nonce);
        _grantDelegate(patient, delegate, validUntil);
    }

    /**
     * @notice Ends the caller's (the patient's) delegation to `delegate`, live or expired.
     *
     * Requirements:
     *
     * - the caller has a delegation to `delegate` (granted and not revoked).
     *
     * Emits {DelegateRevoked}.
     */
    function revokeDelegate(address delegate) external {
        address patient = _msgSender();
        Delegation storage stored = _delegations[patient][delegate];
        if (!stored.active) revert InvalidDelegate(delegate);
        _revokeDelegate(stored, patient, delegate);
    }

    /**
     * @notice Same as {revokeDelegate}, authorized by an EIP-712 `DelegateRevoke` signature of the patient itself
     * (or ERC-1271 for a contract patient); delegates cannot sign it, and nothing a delegate does with its own
     * nonces stops it.
     *
     * Requirements:
     *
     * - `block.timestamp <= revoke.deadline`.
     * - `revoke.patient` has a delegation to `revoke.delegate`.
     * - `signature` is the patient's.
     * - `revoke.nonce` of the patient is unused (it is consumed).
     *
     * Emits {DelegateRevoked}.
     */
    function revokeDelegateBySig(DelegateRevoke calldata revoke, bytes calldata signature) external {
        _checkDeadline(revoke.deadline);
        address patient = revoke.patient;
        address delegate = revoke.delegate;
        Delegation storage stored = _delegations[patient][delegate];
        if (!stored.active) revert InvalidDelegate(delegate);
        _checkSignature(patient, _hashTypedDataV4(_structHash(revoke)), signature);
        _useNonce(patient, revoke.nonce);
        _revokeDelegate(stored, patient, delegate);
    }

    // ---------------------------------------------------------------- records

    /**
     * @notice Anchors version 1 of a new record of `patient`, authored by the caller. Only hashes go on chain:
     * `cid` locates the encrypted document off chain, `commitment` commits to its content.
     *
     * Requirements:
     *
     * - the caller is an active provider.
     * - `patient` is not the zero address, `cid` is not empty, `category` is registered.
     * - no record with the id `recordIdOf(patient, caller, salt)` exists.
     *
     * Emits {RecordAnchored}.
     */
    function anchorRecord(address patient, bytes32 category, bytes32 salt, bytes calldata cid, bytes32 commitment)
        external
        returns (bytes32 recordId)
    {
        address author = _msgSender();
        (RecordState storage state, bytes32 id, uint16 categoryIndex) =
            _checkNewRecord(patient, author, category, salt, cid.length);
        bytes32 versionHash =
            _storeFirstVersion(state, id, patient, author, category, categoryIndex, keccak256(cid), commitment);
        emit RecordAnchored(id, patient, author, 1, category, cid, commitment, 0, versionHash);
        return id;
    }

    /**
     * @notice Same as {anchorRecord}, authorized by an EIP-712 `RecordAnchor` signature of `anchor.author` (or
     * ERC-1271 for a contract author). Anyone may relay it. The record id is
     * `recordIdOf(anchor.patient, anchor.author, anchor.salt)`.
     *
     * Requirements:
     *
     * - `block.timestamp <= anchor.deadline`.
     * - `anchor.author` is an active provider; the record is valid and new as in {anchorRecord}.
     * - `signature` is the author's.
     * - `anchor.nonce` of the author is unused (it is consumed).
     *
     * Emits {RecordAnchored}.
     */
    function anchorRecordBySig(RecordAnchor calldata anchor, bytes calldata signature)
        external
        returns (bytes32 recordId)
    {
        RecordAnchor memory a = anchor; // one validated copy (with the CID): members are read several times
        _checkDeadline(a.deadline);
        RecordState storage state;
        uint16 categoryIndex;
        (state, recordId, categoryIndex) = _checkNewRecord(a.patient, a.author, a.category, a.salt, a.cid.length);
        bytes32 cidHash = keccak256(a.cid);
        _checkSignature(a.author, _hashTypedDataV4(_structHash(anchor, cidHash)), signature);
        _useNonce(a.author, a.nonce);
        bytes32 versionHash =
            _storeFirstVersion(state, recordId, a.patient, a.author, a.category, categoryIndex, cidHash, a.commitment);
        emit RecordAnchored(recordId, a.patient, a.author, 1, a.category, a.cid, a.commitment, 0, versionHash);
    }

    /**
     * @notice Anchors the next version of record `recordId` of `patient`, chained to `previousHash`.
     *
     * Requirements:
     *
     * - `cid` is not empty.
     * - the record exists and is not erased.
     * - the caller is its author and still an active provider.
     * - `previousHash` is the record's current head version hash (optimistic concurrency).
     *
     * Emits {RecordAnchored}.
     */
    function amendRecord(
        address patient,
        bytes32 recordId,
        bytes calldata cid,
        bytes32 commitment,
        bytes32 previousHash
    ) external returns (uint32 version) {
        address author = _msgSender();
        RecordState storage state = _records[patient][recordId];
        uint256 head = _checkAmendment(state, patient, author, recordId, cid.length, previousHash);
        bytes32 category;
        bytes32 versionHash;
        (version, category, versionHash) =
            _advanceVersion(state, head, patient, author, recordId, keccak256(cid), commitment, previousHash);
        emit RecordAnchored(recordId, patient, author, version, category, cid, commitment, previousHash, versionHash);
    }

    /**
     * @notice Same as {amendRecord}, authorized by an EIP-712 `RecordAmend` signature of `amend.author` (or
     * ERC-1271 for a contract author). Anyone may relay it.
     *
     * Requirements:
     *
     * - `block.timestamp <= amend.deadline`.
     * - the amendment is valid as in {amendRecord}, with `amend.author` in place of the caller.
     * - `signature` is the author's.
     * - `amend.nonce` of the author is unused (it is consumed).
     *
     * Emits {RecordAnchored}.
     */
    function amendRecordBySig(RecordAmend calldata amend, bytes calldata signature) external returns (uint32 version) {
        RecordAmend memory a = amend; // one validated copy (with the CID): members are read several times
        _checkDeadline(a.deadline);
        RecordState storage state = _records[a.patient][a.recordId];
        uint256 head = _checkAmendment(state, a.patient, a.author, a.recordId, a.cid.length, a.previousHash);
        bytes32 cidHash = keccak256(a.cid);
        _checkSignature(a.author, _hashTypedDataV4(_structHash(amend, cidHash)), signature);
        _useNonce(a.author, a.nonce);
        bytes32 category;
        bytes32 versionHash;
        (version, category, versionHash) =
            _advanceVersion(state, head, a.patient, a.author, a.recordId, cidHash, a.commitment, a.previousHash);
        emit RecordAnchored(
            a.recordId, a.patient, a.author, version, category, a.cid, a.commitment, a.previousHash, versionHash
        );
    }

    /**
     * @notice Marks record `recordId` of `patient` as erased (right to erasure: the off-chain document is
     * deleted; the chain keeps the hashes). An erased record can no longer be amended, authorized or logged.
     *
     * Requirements:
     *
     * - the caller is `patient` or a live delegate of `patient`.
     * - the record exists and is not erased.
     *
     * Emits {RecordErased} with the caller as `erasedBy`.
     */
    function eraseRecord(address patient, bytes32 recordId) external {
        address caller = _msgSender();
        _checkPatientOrLiveDelegate(patient, caller);
        RecordState storage state = _records[patient][recordId];
        _eraseRecord(state, _loadLiveRecord(state, patient, recordId), patient, recordId, caller);
    }

    /**
     * @notice Same as {eraseRecord}, authorized by an EIP-712 `RecordErase` signature of the patient, of a live
     * delegate of the patient, or (for a contract patient) valid under ERC-1271. Anyone may relay it.
     *
     * Requirements:
     *
     * - `block.timestamp <= erase.deadline`.
     * - the record exists and is not erased.
     * - `signature` is the patient's or a live delegate's.
     * - `erase.nonce` of the signer is unused (it is consumed).
     *
     * Emits {RecordErased} with the signer as `erasedBy`.
     */
    function eraseRecordBySig(RecordErase calldata erase, bytes calldata signature) external {
        _checkDeadline(erase.deadline);
        address patient = erase.patient;
        bytes32 recordId = erase.recordId;
        RecordState storage state = _records[patient][recordId];
        uint256 head = _loadLiveRecord(state, patient, recordId);
        address signer = _checkPatientOrDelegateSignature(patient, _hashTypedDataV4(_structHash(erase)), signature);
        _useNonce(signer, erase.nonce);
        _eraseRecord(state, head, patient, recordId, signer);
    }

    // ---------------------------------------------------------------- disclosures

    /**
     * @notice Logs the access that `request.accessor` signed: version `request.version` of record
     * `request.recordId` of `request.patient`, for `request.purpose`, re-checking consent exactly as
     * {isAuthorized}. Anyone may relay it. Returns the authorizing consent.
     *
     * The patient's own request for their record (right of access) needs no consent: `request.accessor` is
     * `request.patient` and `request.purpose` is PATRQT ("patient requested"). It is logged, and returned, with
     * consent 0, and signed by the patient itself (ECDSA, or ERC-1271 for a contract patient): a delegate's
     * signature is not the patient's, and a delegate reading for the patient is its own accessor, who needs a
     * consent like any other.
     *
     * Requirements:
     *
     * - `block.timestamp <= request.deadline`.
     * - the record exists and is not erased; `request.version` is between 1 and its head version.
     * - the access is authorized now (see {isAuthorized}), or it is the patient's own PATRQT request.
     * - `signature` is the accessor's (ECDSA, or ERC-1271 for a contract accessor).
     * - `request.nonce` of the accessor is unused (it is consumed).
     *
     * Emits {AccessLogged} with the request's EIP-712 digest (see {accessRequestDigest}).
     */
    function logAccessBySig(AccessRequest calldata request, bytes calldata signature)
        external
        returns (bytes32 consentId)
    {
        _checkDeadline(request.deadline);
        address patient = request.patient;
        address accessor = request.accessor;
        bytes32 recordId = request.recordId;
        uint32 version = request.version;
        bytes32 purpose = request.purpose;
        uint256 head = _loadLiveRecord(_records[patient][recordId], patient, recordId);
        _checkVersion(head, recordId, version);
        consentId = _authorizingConsent(patient, accessor, recordId, _categoryIndexOf(head), purpose);
        if (consentId == 0) _checkPatientRequest(patient, recordId, accessor, purpose);
        bytes32 digest = _hashTypedDataV4(_structHash(request));
        _checkSignature(accessor, digest, signature);
        _useNonce(accessor, request.nonce);
        emit AccessLogged(recordId, patient, accessor, version, purpose, consentId, digest);
    }

    /**
     * @notice Logs the break-glass (ETREAT) access that `request.accessor` signed, without consent:
     * `request.reasonHash` commits to the off-chain justification. Anyone may relay it.
     *
     * Requirements:
     *
     * - `block.timestamp <= request.deadline`.
     * - the record exists and is not erased; `request.version` is between 1 and its head version.
     * - `request.reasonHash` is not zero.
     * - the accessor is an active provider holding `EMERGENCY_ROLE`.
     * - `signature` is the accessor's.
     * - `request.nonce` of the accessor is unused (it is consumed).
     *
     * Emits {EmergencyAccessLogged} with the request's EIP-712 digest.
     */
    function logEmergencyAccessBySig(EmergencyAccessRequest calldata request, bytes calldata signature) external {
        _checkDeadline(request.deadline);
        address patient = request.patient;
        address accessor = request.accessor;
        bytes32 recordId = request.recordId;
        uint32 version = request.version;
        bytes32 reasonHash = request.reasonHash;
        uint256 head = _loadLiveRecord(_records[patient][recordId], patient, recordId);
        _checkVersion(head, recordId, version);
        if (reasonHash == 0) revert EmptyReason();
        if (_providerFlags[accessor] & (_PROVIDER | _SUSPENDED | _EMERGENCY) != (_PROVIDER | _EMERGENCY)) {
            revert NotEmergencyProvider(accessor);
        }
        bytes32 digest = _hashTypedDataV4(_structHash(request));
        _checkSignature(accessor, digest, signature);
        _useNonce(accessor, request.nonce);
        emit EmergencyAccessLogged(recordId, patient, accessor, version, reasonHash, digest);
    }

    /**
     * @notice Anchors `root`, the Merkle root of the off-chain disclosure log (each entry a signed access
     * request) after entries `[fromIndex, toIndex)` were appended. Batches are contiguous: the new tree size is
     * `toIndex`. This is the only act of an operator on the ledger.
     *
     * Requirements:
     *
     * - the caller has `CUSTODIAN_ROLE`.
     * - `fromIndex` is the current size and `toIndex > fromIndex`.
     * - `root` is not zero.
     *
     * Emits {DisclosureBatchAnchored}.
     */
    function anchorDisclosureBatch(bytes32 root, uint64 fromIndex, uint64 toIndex) external onlyRole(CUSTODIAN_ROLE) {
        uint64 size = _batchHead.size;
        if (fromIndex != size || toIndex <= fromIndex) revert InvalidBatch(size, fromIndex, toIndex);
        if (root == 0) revert EmptyBatchRoot();
        _batchHead = BatchHead({root: root, size: toIndex});
        emit DisclosureBatchAnchored(root, fromIndex, toIndex);
    }

    // ---------------------------------------------------------------- nonces and encryption keys

    /**
     * @notice Marks the caller's nonce `nonce` used, so that a message the caller signed with it can no longer
     * be relayed.
     *
     * Requirements:
     *
     * - `nonce` of the caller is unused.
     *
     * Emits {NonceInvalidated}.
     */
    function invalidateNonce(uint256 nonce) external {
        address signer = _msgSender();
        _useNonce(signer, nonce);
        emit NonceInvalidated(signer, nonce);
    }

    /**
     * @notice Publishes `publicKey`, the caller's X25519 public key that key shares are sealed to (replacing any
     * earlier one).
     *
     * Requirements:
     *
     * - `publicKey` is not zero ({EmptyPublicKey}).
     *
     * Emits {EncryptionKeySet}.
     */
    function setEncryptionKey(bytes32 publicKey) external {
        if (publicKey == 0) revert EmptyPublicKey();
        _setEncryptionKey(_msgSender(), publicKey);
    }

    /**
     * @notice Same as {setEncryptionKey}, authorized by an EIP-712 `EncryptionKey` signature of `key.account`
     * (or ERC-1271 for a contract account). Anyone may relay it.
     *
     * Requirements:
     *
     * - `block.timestamp <= key.deadline`.
     * - `key.publicKey` is not zero.
     * - `signature` is the account's.
     * - `key.nonce` of the account is unused (it is consumed).
     *
     * Emits {EncryptionKeySet}.
     */
    function setEncryptionKeyBySig(EncryptionKey calldata key, bytes calldata signature) external {
        _checkDeadline(key.deadline);
        address account = key.account;
        bytes32 publicKey = key.publicKey;
        if (publicKey == 0) revert EmptyPublicKey();
        _checkSignature(account, _hashTypedDataV4(_structHash(key)), signature);
        _useNonce(account, key.nonce);
        _setEncryptionKey(account, publicKey);
    }

    // ---------------------------------------------------------------- views

    /**
     * @notice Whether `grantee` may access record `recordId` of `patient` for `purpose` now: the record exists
     * and is not erased, `grantee` is an active provider, `purpose` is not ETREAT, and a consent of `patient` to
     * `grantee` for `purpose` is active now with scope `recordId`, the record's category, or all records.
     * The patient's own PATRQT request, which {logAccessBySig} takes without consent, is no grant: this view and
     * {authorizingConsent} answer for consents only.
     */
    function isAuthorized(address patient, address grantee, bytes32 recordId, bytes32 purpose)
        external
        view
        returns (bool)
    {
        return authorizingConsent(patient, grantee, recordId, purpose) != 0;
    }

    /// @inheritdoc IConsentLedger
    /// @dev Scopes are tried in the order record, category, all records.
    function authorizingConsent(address patient, address grantee, bytes32 recordId, bytes32 purpose)
        public
        view
        returns (bytes32)
    {
        uint256 head = _recordHead(_records[patient][recordId]);
        if (head & _ADDRESS_MASK == 0 || head & _ERASED != 0) return 0;
        return _authorizingConsent(patient, grantee, recordId, _categoryIndexOf(head), purpose);
    }

    /// @notice The stored consent `consentId` (all zero if unknown).
    function consent(bytes32 consentId) external view returns (Consent memory) {
        return _consents[consentId];
    }

    /// @notice `keccak256(abi.encode(patient, grantee, scope, purpose))`.
    function consentIdOf(address patient, address grantee, bytes32 scope, bytes32 purpose)
        public
        pure
        returns (bytes32 consentId)
    {
        // keccak256(abi.encode(patient, grantee, scope, purpose)) in scratch memory past the free pointer (it is
        // on the hot path of every grant and of every authorization check, up to three times).
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, patient)
            mstore(add(ptr, 0x20), grantee)
            mstore(add(ptr, 0x40), scope)
            mstore(add(ptr, 0x60), purpose)
            consentId := keccak256(ptr, 0x80)
        }
    }

    /// @inheritdoc IConsentLedger
    /// @dev `(0, false)` if `patient` has no delegation to `delegate`.
    function delegation(address patient, address delegate) external view returns (uint64 validUntil, bool live) {
        Delegation memory d = _delegations[patient][delegate];
        return (d.validUntil, _isLive(d));
    }

    /// @notice Whether `delegate` may act for `patient` now.
    function isLiveDelegate(address patient, address delegate) external view returns (bool) {
        return _isLiveDelegate(patient, delegate);
    }

    /// @notice The head of record `recordId` of `patient` and its version hash (all zero if unknown).
    function record(address patient, bytes32 recordId) external view returns (Record memory, bytes32 head) {
        RecordState storage state = _records[patient][recordId];
        return (state.head, state.versionHash);
    }

    /// @notice `keccak256(abi.encode(patient, author, salt))`.
    function recordIdOf(address patient, address author, bytes32 salt) public pure returns (bytes32 recordId) {
        // keccak256(abi.encode(patient, author, salt)), in scratch memory past the free pointer.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, patient)
            mstore(add(ptr, 0x20), author)
            mstore(add(ptr, 0x40), salt)
            recordId := keccak256(ptr, 0x60)
        }
    }

    /// @notice The id of the category with index `index` (zero if none).
    function categoryId(uint16 index) external view returns (bytes32) {
        return _categoryIds[index];
    }

    /// @notice The number of registered categories (their indexes are 1 to this number).
    function categoryCount() external view returns (uint16) {
        return _categoryCount;
    }

    /// @notice Whether `account` holds `PROVIDER_ROLE` and is not suspended.
    function isActiveProvider(address account) public view returns (bool) {
        return _providerFlags[account] & (_PROVIDER | _SUSPENDED) == _PROVIDER;
    }

    /// @notice Whether `provider` is suspended.
    function isSuspended(address provider) external view returns (bool) {
        return _providerFlags[provider] & _SUSPENDED != 0;
    }

    /// @notice The name given to `provider` at onboarding.
    function providerName(address provider) external view returns (string memory) {
        return _providerNames[provider];
    }

    /// @notice The latest disclosure batch root and the disclosure-log size it covers.
    function disclosureBatchHead() external view returns (bytes32 root, uint64 size) {
        return (_batchHead.root, _batchHead.size);
    }

    /// @notice Whether nonce `nonce` of `signer` is used (consumed by a signed message or invalidated).
    function nonceUsed(address signer, uint256 nonce) external view returns (bool) {
        return (_nonceBitmaps[signer][nonce >> 8] >> (nonce & 0xff)) & 1 != 0;
    }

    /// @inheritdoc IConsentLedger
    function nonceBitmap(address signer, uint256 wordPos) external view returns (uint256 bitmap) {
        return _nonceBitmaps[signer][wordPos];
    }

    /// @notice The X25519 public key `account` published (zero if none).
    function encryptionKeyOf(address account) external view returns (bytes32) {
        return _encryptionKeys[account];
    }

    /// @inheritdoc IConsentLedger
    function accessRequestDigest(AccessRequest calldata request) external view returns (bytes32) {
        AccessRequest memory r = request; // the copy reverts on dirty members, as {logAccessBySig} does
        return _hashTypedDataV4(keccak256(abi.encode(ACCESS_REQUEST_TYPEHASH, r)));
    }

    /// @notice The EIP-712 domain separator (name "ConsentLedger", version "1", chain id, this contract).
    // forge-lint: disable-next-line(mixed-case-function)
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @inheritdoc AccessControl
    function supportsInterface(bytes4 interfaceId) public view override returns (bool) {
        return interfaceId == type(IConsentLedger).interfaceId || super.supportsInterface(interfaceId);
    }

    // ---------------------------------------------------------------- internal: roles

    /// @dev Mirrors `PROVIDER_ROLE` and `EMERGENCY_ROLE` into `_providerFlags` (see {isActiveProvider}).
    function _grantRole(bytes32 role, address account) internal override returns (bool granted) {
        granted = super._grantRole(role, account);
        if (granted) {
            if (role == PROVIDER_ROLE) _providerFlags[account] |= _PROVIDER;
            else if (role == EMERGENCY_ROLE) _providerFlags[account] |= _EMERGENCY;
        }
    }

    /// @dev See {_grantRole}. Also covers {renounceRole}.
    function _revokeRole(bytes32 role, address account) internal override returns (bool revoked) {
        revoked = super._revokeRole(role, account);
        if (revoked) {
            if (role == PROVIDER_ROLE) _providerFlags[account] &= ~_PROVIDER;
            else if (role == EMERGENCY_ROLE) _providerFlags[account] &= ~_EMERGENCY;
        }
    }

    // ---------------------------------------------------------------- internal: signatures and nonces

    function _checkDeadline(uint256 deadline) private view {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
    }

    /// @dev Reverts with {InvalidSigner} unless `signature` over `digest` is `party`'s: by ECDSA, or for a
    /// contract `party` under ERC-1271.
    function _checkSignature(address party, bytes32 digest, bytes calldata signature) private view {
        // The third value only details why recovery failed; any failure means "not the party's key".
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError && recovered == party) return;
        if (party.code.length != 0 && SignatureChecker.isValidERC1271SignatureNowCalldata(party, digest, signature)) {
            return;
        }
        revert InvalidSigner(party, recovered);
    }

    /**
     * @dev Returns who signed `digest` for `patient`: the ECDSA signer if it is the patient or a live delegate of
     * the patient, else the patient if it is a contract accepting the signature under ERC-1271. Reverts with
     * {InvalidSigner} otherwise.
     */
    function _checkPatientOrDelegateSignature(address patient, bytes32 digest, bytes calldata signature)
        private
        view
        returns (address)
    {
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError && (recovered == patient || _isLiveDelegate(patient, recovered))) {
            return recovered;
        }
        if (patient.code.length != 0 && SignatureChecker.isValidERC1271SignatureNowCalldata(patient, digest, signature))
        {
            return patient;
        }
        revert InvalidSigner(patient, recovered);
    }

    /// @dev Consumes nonce `nonce` of `signer`: flips its bit (one SLOAD and one SSTORE), reverting if it was set.
    function _useNonce(address signer, uint256 nonce) private {
        // forge-lint: disable-next-line(incorrect-shift)
        uint256 bit = 1 << (nonce & 0xff); // bit `nonce % 256` of word `nonce / 256`
        uint256 flipped = _nonceBitmaps[signer][nonce >> 8] ^= bit;
        if (flipped & bit == 0) revert NonceAlreadyUsed(signer, nonce);
    }

    // The EIP-712 struct hashes, `keccak256(abi.encode(TYPEHASH, members...))`, in scratch memory past the free
    // pointer. The ABI encoding of a struct's static members is their calldata, so they are hashed in place
    // instead of being re-encoded. Calldata is not cleaned here: every caller reads each member narrower than
    // 32 bytes (address, uint32, uint64) through Solidity, which reverts on dirty bits, so what is hashed is
    // exactly what the function acts on.

    function _structHash(ConsentGrant calldata grant) private pure returns (bytes32 structHash) {
        bytes32 typehash = CONSENT_GRANT_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), grant, 0x100)
            structHash := keccak256(ptr, 0x120)
        }
    }

    function _structHash(ConsentRevoke calldata revoke) private pure returns (bytes32 structHash) {
        bytes32 typehash = CONSENT_REVOKE_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), revoke, 0x80)
            structHash := keccak256(ptr, 0xa0)
        }
    }

    function _structHash(DelegateGrant calldata grant) private pure returns (bytes32 structHash) {
        bytes32 typehash = DELEGATE_GRANT_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), grant, 0xa0)
            structHash := keccak256(ptr, 0xc0)
        }
    }

    function _structHash(DelegateRevoke calldata revoke) private pure returns (bytes32 structHash) {
        bytes32 typehash = DELEGATE_REVOKE_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), revoke, 0x80)
            structHash := keccak256(ptr, 0xa0)
        }
    }

    function _structHash(RecordErase calldata erase) private pure returns (bytes32 structHash) {
        bytes32 typehash = RECORD_ERASE_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), erase, 0x80)
            structHash := keccak256(ptr, 0xa0)
        }
    }

    function _structHash(AccessRequest calldata request) private pure returns (bytes32 structHash) {
        bytes32 typehash = ACCESS_REQUEST_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), request, 0xe0)
            structHash := keccak256(ptr, 0x100)
        }
    }

    function _structHash(EmergencyAccessRequest calldata request) private pure returns (bytes32 structHash) {
        bytes32 typehash = EMERGENCY_ACCESS_REQUEST_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), request, 0xe0)
            structHash := keccak256(ptr, 0x100)
        }
    }

    function _structHash(EncryptionKey calldata key) private pure returns (bytes32 structHash) {
        bytes32 typehash = ENCRYPTION_KEY_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), key, 0x80)
            structHash := keccak256(ptr, 0xa0)
        }
    }

    /// @dev The `bytes cid` member is hashed as EIP-712 bytes, `cidHash = keccak256(cid)`; the head word at its
    /// place (0x80) holds the ABI offset of `cid` and is replaced by the hash.
    function _structHash(RecordAnchor calldata anchor, bytes32 cidHash) private pure returns (bytes32 structHash) {
        bytes32 typehash = RECORD_ANCHOR_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), anchor, 0x80) // patient, author, category, salt
            mstore(add(ptr, 0xa0), cidHash)
            calldatacopy(add(ptr, 0xc0), add(anchor, 0xa0), 0x60) // commitment, nonce, deadline
            structHash := keccak256(ptr, 0x120)
        }
    }

    /// @dev As for `RecordAnchor`: `cid` (head word 0x60) is hashed as EIP-712 bytes.
    function _structHash(RecordAmend calldata amend, bytes32 cidHash) private pure returns (bytes32 structHash) {
        bytes32 typehash = RECORD_AMEND_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), amend, 0x60) // patient, author, recordId
            mstore(add(ptr, 0x80), cidHash)
            calldatacopy(add(ptr, 0xa0), add(amend, 0x80), 0x80) // commitment, previousHash, nonce, deadline
            structHash := keccak256(ptr, 0x120)
        }
    }

    // ---------------------------------------------------------------- internal: consent

    function _grantConsent(
        address patient,
        address grantee,
        bytes32 scope,
        bytes32 purpose,
        uint64 validFrom,
        uint64 validUntil,
        address signer
    ) private returns (bytes32 consentId) {
        consentId = consentIdOf(patient, grantee, scope, purpose);
        Consent storage stored = _consents[consentId];
        // A delegate cannot undo the patient's own revocation. (The read only happens on the delegate's path, and
        // costs it next to nothing: it pays the slot's cold access, which the write below then does not.)
        if (signer != patient && _consentWord(stored) & _REVOKED_BY_PATIENT != 0) revert RevokedByPatient(consentId);
        // One SSTORE of the packed slot (the struct assignment would read-modify-write each member):
        // patient | validFrom << 160 | validUntil << 200, both revocation flags clear. Both bounds were checked to
        // fit uint40.
        assembly ("memory-safe") {
            sstore(stored.slot, or(patient, or(shl(160, validFrom), shl(200, validUntil))))
        }
        emit ConsentGranted(consentId, patient, grantee, scope, purpose, validFrom, validUntil, signer);
    }

    /// @dev Marks the consent revoked, and revoked by the patient if the patient is the signer (one SSTORE).
    function _revokeConsent(Consent storage stored, uint256 word, bytes32 consentId, address patient, address signer)
        private
    {
        uint256 flags = signer == patient ? _REVOKED | _REVOKED_BY_PATIENT : _REVOKED;
        assembly ("memory-safe") {
            sstore(stored.slot, or(word, flags))
        }
        emit ConsentRevoked(consentId, patient, signer);
    }

    /// @dev The packed slot of a consent that exists and is not revoked by its patient; reverts otherwise.
    function _loadConsentRevocable(Consent storage stored, bytes32 consentId) private view returns (uint256 word) {
        word = _consentWord(stored);
        if (word & _ADDRESS_MASK == 0) revert UnknownConsent(consentId);
        if (word & _REVOKED_BY_PATIENT != 0) revert ConsentAlreadyRevoked(consentId);
    }

    /// @dev A consent a delegate revoked may be revoked again by its patient only: the patient's own revocation
    /// is the one a delegate cannot undo (see {RevokedByPatient}).
    function _checkRevocableBy(uint256 word, bytes32 consentId, bool byPatient) private pure {
        if (word & _REVOKED != 0 && !byPatient) revert ConsentAlreadyRevoked(consentId);
    }

    function _consentWord(Consent storage stored) private view returns (uint256 word) {
        assembly ("memory-safe") {
            word := sload(stored.slot)
        }
    }

    function _patientOf(uint256 word) private pure returns (address patient) {
        assembly ("memory-safe") {
            patient := and(word, _ADDRESS_MASK)
        }
    }

    function _windowOf(uint256 word) private pure returns (uint256 validFrom, uint256 validUntil) {
        assembly ("memory-safe") {
            validFrom := and(shr(160, word), 0xffffffffff)
            validUntil := and(shr(200, word), 0xffffffffff)
        }
    }

    function _grantDelegate(address patient, address delegate, uint64 validUntil) private {
        if (delegate == address(0) || delegate == patient) revert InvalidDelegate(delegate);
        _delegations[patient][delegate] = Delegation({active: true, validUntil: validUntil});
        emit DelegateGranted(patient, delegate, validUntil);
    }

    /// @dev `stored` is the patient's delegation to `delegate`, checked to be active.
    function _revokeDelegate(Delegation storage stored, address patient, address delegate) private {
        assembly ("memory-safe") {
            sstore(stored.slot, 0) // delete: the struct is one slot
        }
        emit DelegateRevoked(patient, delegate);
    }

    /// @dev Reverts unless the grant arguments are valid (cheapest checks first).
    function _checkGrant(address patient, address grantee, bytes32 purpose, uint64 validFrom, uint64 validUntil)
        private
        pure
    {
        if (patient == address(0) || grantee == address(0)) revert ZeroAddress();
        _checkGrantablePurpose(purpose);
        if (
            validFrom > type(uint40).max || validUntil > type(uint40).max
                || (validUntil != 0 && validUntil <= validFrom)
        ) revert InvalidValidityWindow(validFrom, validUntil);
    }

    function _checkGrantablePurpose(bytes32 purpose) private pure {
        if (
            purpose == TREAT || purpose == HPAYMT || purpose == HOPERAT || purpose == HRESCH || purpose == PATRQT
                || purpose == PUBHLTH
        ) return;
        if (purpose == ETREAT) revert PurposeNotGrantable(purpose);
        revert UnknownPurpose(purpose);
    }

    function _checkPatientOrLiveDelegate(address patient, address caller) private view {
        if (caller != patient && !_isLiveDelegate(patient, caller)) revert NotPatientOrDelegate(patient, caller);
    }

    function _isLiveDelegate(address patient, address delegate) private view returns (bool) {
        return _isLive(_delegations[patient][delegate]);
    }

    function _isLive(Delegation memory d) private view returns (bool) {
        return d.active && (d.validUntil == 0 || block.timestamp < d.validUntil);
    }

    /// @dev See {isAuthorized}; the record is known to exist and not be erased.
    function _authorizingConsent(
        address patient,
        address grantee,
        bytes32 recordId,
        uint16 categoryIndex,
        bytes32 purpose
    ) private view returns (bytes32 consentId) {
        if (purpose == ETREAT || !isActiveProvider(grantee)) return 0;
        consentId = consentIdOf(patient, grantee, recordId, purpose);
        if (_isActiveConsent(consentId)) return consentId;
        consentId = consentIdOf(patient, grantee, _categoryIds[categoryIndex], purpose);
        if (_isActiveConsent(consentId)) return consentId;
        consentId = consentIdOf(patient, grantee, 0, purpose);
        if (_isActiveConsent(consentId)) return consentId;
        return 0;
    }

    /// @dev Reverts with {AccessNotAuthorized} unless the request is the patient's own PATRQT request, the one
    /// access that needs no consent (right of access). Called only once no consent authorizes, so a consented
    /// access pays nothing for it.
    function _checkPatientRequest(address patient, bytes32 recordId, address accessor, bytes32 purpose) private pure {
        if (accessor != patient || purpose != PATRQT) revert AccessNotAuthorized(patient, recordId, accessor, purpose);
    }

    /// @dev Granted, not revoked, and inside its window now (`revokedByPatient` implies `revoked`).
    function _isActiveConsent(bytes32 consentId) private view returns (bool) {
        uint256 word = _consentWord(_consents[consentId]);
        if (word & _ADDRESS_MASK == 0 || word & _REVOKED != 0) return false;
        (uint256 validFrom, uint256 validUntil) = _windowOf(word);
        return validFrom <= block.timestamp && (validUntil == 0 || block.timestamp < validUntil);
    }

    // ---------------------------------------------------------------- internal: records

    function _checkActiveProvider(address account) private view {
        if (!isActiveProvider(account)) revert NotActiveProvider(account);
    }

    /// @dev {anchorRecord} checks: returns the new record's state, id and category index.
    function _checkNewRecord(address patient, address author, bytes32 category, bytes32 salt, uint256 cidLength)
        private
        view
        returns (RecordState storage state, bytes32 recordId, uint16 categoryIndex)
    {
        _checkActiveProvider(author);
        if (patient == address(0)) revert ZeroAddress();
        if (cidLength == 0) revert EmptyCid();
        categoryIndex = _categoryIndexes[category];
        if (categoryIndex == 0) revert UnknownCategory(category);
        recordId = recordIdOf(patient, author, salt);
        state = _records[patient][recordId];
        if (_recordHead(state) != 0) revert RecordAlreadyExists(recordId);
    }

    /// @dev Writes version 1 of a new record (two SSTOREs) and returns its version hash, for {RecordAnchored}.
    function _storeFirstVersion(
        RecordState storage state,
        bytes32 recordId,
        address patient,
        address author,
        bytes32 category,
        uint16 categoryIndex,
        bytes32 cidHash,
        bytes32 commitment
    ) private returns (bytes32 versionHash) {
        versionHash = _versionHash(recordId, 1, patient, author, category, cidHash, commitment, 0);
        // One SSTORE of the packed head (author | version << 160 | categoryIndex << 192, erased = false) instead of
        // a read-modify-write per member, and one of the version hash in the next slot.
        assembly ("memory-safe") {
            sstore(state.slot, or(author, or(shl(160, 1), shl(192, categoryIndex))))
            sstore(add(state.slot, 1), versionHash)
        }
    }

    /// @dev {amendRecord} checks: returns the record's packed head.
    function _checkAmendment(
        RecordState storage state,
        address patient,
        address author,
        bytes32 recordId,
        uint256 cidLength,
        bytes32 previousHash
    ) private view returns (uint256 head) {
        if (cidLength == 0) revert EmptyCid();
        head = _loadLiveRecord(state, patient, recordId);
        if (_authorOf(head) != author) revert NotRecordAuthor(recordId, author);
        _checkActiveProvider(author);
        bytes32 currentHash = state.versionHash;
        if (previousHash != currentHash) revert StaleVersion(recordId, previousHash, currentHash);
    }

    /// @dev Bumps the version in the packed head and chains the new version hash (two SSTOREs). Returns the new
    /// version, the record's category id and the new version hash, for {RecordAnchored}.
    function _advanceVersion(
        RecordState storage state,
        uint256 head,
        address patient,
        address author,
        bytes32 recordId,
        bytes32 cidHash,
        bytes32 commitment,
        bytes32 previousHash
    ) private returns (uint32 version, bytes32 category, bytes32 versionHash) {
        version = _versionOf(head) + 1; // checked: the version field cannot carry into the category index
        category = _categoryIds[_categoryIndexOf(head)];
        versionHash = _versionHash(recordId, version, patient, author, category, cidHash, commitment, previousHash);
        assembly ("memory-safe") {
            sstore(state.slot, add(head, shl(160, 1)))
            sstore(add(state.slot, 1), versionHash)
        }
    }

    /// @dev Sets the erased flag of the packed head (one SSTORE).
    function _eraseRecord(RecordState storage state, uint256 head, address patient, bytes32 recordId, address by)
        private
    {
        assembly ("memory-safe") {
            sstore(state.slot, or(head, _ERASED))
        }
        emit RecordErased(recordId, patient, by, _versionOf(head));
    }

    /// @dev The packed head of a record that exists and is not erased; reverts otherwise.
    function _loadLiveRecord(RecordState storage state, address patient, bytes32 recordId)
        private
        view
        returns (uint256 head)
    {
        head = _recordHead(state);
        if (head & _ADDRESS_MASK == 0) revert UnknownRecord(patient, recordId);
        if (head & _ERASED != 0) revert RecordIsErased(recordId);
    }

    function _recordHead(RecordState storage state) private view returns (uint256 head) {
        assembly ("memory-safe") {
            head := sload(state.slot)
        }
    }

    function _authorOf(uint256 head) private pure returns (address author) {
        assembly ("memory-safe") {
            author := and(head, _ADDRESS_MASK)
        }
    }

    function _versionOf(uint256 head) private pure returns (uint32 version) {
        assembly ("memory-safe") {
            version := and(shr(160, head), 0xffffffff)
        }
    }

    function _categoryIndexOf(uint256 head) private pure returns (uint16 categoryIndex) {
        assembly ("memory-safe") {
            categoryIndex := and(shr(192, head), 0xffff)
        }
    }

    /// @dev Reverts unless `version` is one of the record's versions, 1 to the head's.
    function _checkVersion(uint256 head, bytes32 recordId, uint32 version) private pure {
        if (version == 0 || version > _versionOf(head)) revert UnknownVersion(recordId, version);
    }

    function _versionHash(
        bytes32 recordId,
        uint32 version,
        address patient,
        address author,
        bytes32 category,
        bytes32 cidHash,
        bytes32 commitment,
        bytes32 previousHash
    ) private pure returns (bytes32 versionHash) {
        // keccak256(abi.encode(recordId, version, patient, author, category, cidHash, commitment, previousHash)),
        // in scratch memory past the free pointer.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, recordId)
            mstore(add(ptr, 0x20), version)
            mstore(add(ptr, 0x40), patient)
            mstore(add(ptr, 0x60), author)
            mstore(add(ptr, 0x80), category)
            mstore(add(ptr, 0xa0), cidHash)
            mstore(add(ptr, 0xc0), commitment)
            mstore(add(ptr, 0xe0), previousHash)
            versionHash := keccak256(ptr, 0x100)
        }
    }

    function _registerCategory(string memory code) private returns (bytes32 id) {
        if (bytes(code).length == 0) revert EmptyCategoryCode();
        id = keccak256(bytes(code));
        if (_categoryIndexes[id] != 0) revert CategoryAlreadyRegistered(id);
        uint16 index = ++_categoryCount;
        _categoryIndexes[id] = index;
        _categoryIds[index] = id;
        emit CategoryRegistered(id, index, code);
    }

    // ---------------------------------------------------------------- internal: encryption keys

    function _setEncryptionKey(address account, bytes32 publicKey) private {
        _encryptionKeys[account] = publicKey;
        emit EncryptionKeySet(account, publicKey);
    }
}
