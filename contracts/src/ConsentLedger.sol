// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

import {IConsentLedger} from "./IConsentLedger.sol";

/// @title ConsentLedger
/// @notice Healthcare consent and record-audit ledger for a permissioned EVM chain. See {IConsentLedger} for the
/// identifiers. Roles:
///
/// - `DEFAULT_ADMIN_ROLE`: registers record categories, onboards/suspends providers, manages every other role.
/// - `PROVIDER_ROLE`: anchors and amends records; can be the grantee of a consent. Granted by {onboardProvider}.
///   A provider is *active* while it holds the role and is not suspended.
/// - `CUSTODIAN_ROLE`: the off-chain record custodian; logs disclosures, anchors disclosure batches, may erase.
/// - `EMERGENCY_ROLE`: lets an active provider be the accessor of {logEmergencyAccess} (break-glass, ETREAT).
///
/// A patient acts directly (as `msg.sender`) or by EIP-712 signature relayed by anyone. A *live delegate*
/// (guardian, proxy) may grant and revoke consents for the patient, directly or by signature, but cannot
/// manage delegations. All three signed message types share the patient's nonce sequence ({nonces}).
contract ConsentLedger is IConsentLedger, AccessControl, EIP712, Nonces {
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
    /// @dev Emergency treatment: never grantable, only reachable through {logEmergencyAccess}.
    bytes32 public constant ETREAT = "ETREAT";

    bytes32 public constant CONSENT_GRANT_TYPEHASH = keccak256(
        "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)"
    );
    bytes32 public constant CONSENT_REVOKE_TYPEHASH =
        keccak256("ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)");
    bytes32 public constant DELEGATE_GRANT_TYPEHASH =
        keccak256("DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)");

    uint8 private constant _PROVIDER = 1; // holds PROVIDER_ROLE (mirror of AccessControl, kept by _grantRole/_revokeRole)
    uint8 private constant _SUSPENDED = 2;

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
     * authorized by any consent) until {reinstateProvider}. Its role and consents are kept.
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
     * (patient, grantee, scope, purpose) replaces the window and clears a revocation. Does not use a nonce.
     *
     * Requirements:
     *
     * - the caller is `patient` or a live delegate of `patient`.
     * - `patient` and `grantee` are not the zero address.
     * - `purpose` is a known, grantable purpose (not ETREAT).
     * - both bounds fit in uint40 and `validUntil == 0 || validUntil > validFrom`.
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
     * - `grant.nonce` is the patient's current nonce (it is consumed).
     * - `signature` is valid for the patient as described above.
     *
     * Emits {ConsentGranted} with the recovered signer (the patient for an ERC-1271 signature).
     */
    function grantConsentBySig(ConsentGrant calldata grant, bytes calldata signature)
        external
        returns (bytes32 consentId)
    {
        ConsentGrant memory g = grant; // one validated copy: each field is read twice or more below
        _checkDeadline(g.deadline);
        _checkGrant(g.patient, g.grantee, g.purpose, g.validFrom, g.validUntil);
        _useCheckedNonce(g.patient, g.nonce);
        bytes32 digest = _hashTypedDataV4(_hashStruct(CONSENT_GRANT_TYPEHASH, grant));
        address signer = _checkSigner(g.patient, digest, signature, true);
        return _grantConsent(g.patient, g.grantee, g.scope, g.purpose, g.validFrom, g.validUntil, signer);
    }

    /**
     * @notice Revokes consent `consentId`. Does not use a nonce.
     *
     * Requirements:
     *
     * - the consent exists and is not revoked.
     * - the caller is its patient or a live delegate of its patient.
     *
     * Emits {ConsentRevoked} with the caller as signer.
     */
    function revokeConsent(bytes32 consentId) external {
        Consent memory stored = _consents[consentId];
        address patient = stored.patient;
        if (patient == address(0)) revert UnknownConsent(consentId);
        if (stored.revoked) revert ConsentAlreadyRevoked(consentId);
        address caller = _msgSender();
        _checkPatientOrLiveDelegate(patient, caller);
        _revokeConsent(consentId, patient, caller);
    }

    /**
     * @notice Same as {revokeConsent}, authorized by an EIP-712 `ConsentRevoke` signature (see
     * {grantConsentBySig} for who may sign).
     *
     * Requirements:
     *
     * - `block.timestamp <= revoke.deadline`.
     * - the consent exists, belongs to `revoke.patient` and is not revoked.
     * - `revoke.nonce` is the patient's current nonce (it is consumed).
     * - `signature` is valid for the patient.
     *
     * Emits {ConsentRevoked} with the recovered signer.
     */
    function revokeConsentBySig(ConsentRevoke calldata revoke, bytes calldata signature) external {
        _checkDeadline(revoke.deadline);
        bytes32 consentId = revoke.consentId;
        address patient = revoke.patient;
        Consent memory stored = _consents[consentId];
        if (patient == address(0) || stored.patient != patient) revert UnknownConsent(consentId);
        if (stored.revoked) revert ConsentAlreadyRevoked(consentId);
        _useCheckedNonce(patient, revoke.nonce);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(CONSENT_REVOKE_TYPEHASH, revoke)));
        address signer = _checkSigner(patient, digest, signature, true);
        _revokeConsent(consentId, patient, signer);
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
     * - `grant.nonce` is the patient's current nonce (it is consumed).
     * - `signature` is the patient's.
     *
     * Emits {DelegateGranted}.
     */
    function grantDelegateBySig(DelegateGrant calldata grant, bytes calldata signature) external {
        _checkDeadline(grant.deadline);
        address patient = grant.patient;
        if (patient == address(0)) revert ZeroAddress();
        _useCheckedNonce(patient, grant.nonce);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(DELEGATE_GRANT_TYPEHASH, grant)));
        _checkSigner(patient, digest, signature, false);
        _grantDelegate(patient, grant.delegate, grant.validUntil);
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
        if (!_delegations[patient][delegate].active) revert InvalidDelegate(delegate);
        delete _delegations[patient][delegate];
        emit DelegateRevoked(patient, delegate);
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
        _checkActiveProvider(author);
        if (patient == address(0)) revert ZeroAddress();
        if (cid.length == 0) revert EmptyCid();
        uint16 categoryIndex = _categoryIndexes[category];
        if (categoryIndex == 0) revert UnknownCategory(category);
        recordId = recordIdOf(patient, author, salt);
        RecordState storage state = _records[patient][recordId];
        if (state.head.author != address(0)) revert RecordAlreadyExists(recordId);
        // One SSTORE of the packed head (author | version << 160 | categoryIndex << 192, erased = false) instead of
        // a read-modify-write per member.
        assembly ("memory-safe") {
            sstore(state.slot, or(author, or(shl(160, 1), shl(192, categoryIndex))))
        }
        bytes32 versionHash = _versionHash(recordId, 1, patient, author, category, keccak256(cid), commitment, 0);
        state.versionHash = versionHash;
        emit RecordAnchored(recordId, patient, author, 1, category, cid, commitment, 0, versionHash);
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
        if (cid.length == 0) revert EmptyCid();
        RecordState storage state = _records[patient][recordId];
        bytes32 category;
        (version, category) = _advanceVersion(state, patient, recordId, previousHash);
        bytes32 versionHash =
            _versionHash(recordId, version, patient, msg.sender, category, keccak256(cid), commitment, previousHash);
        state.versionHash = versionHash;
        emit RecordAnchored(
            recordId, patient, msg.sender, version, category, cid, commitment, previousHash, versionHash
        );
    }

    /**
     * @notice Marks record `recordId` of `patient` as erased (right to erasure: the off-chain document is
     * deleted; the chain keeps the hashes). An erased record can no longer be amended, authorized or logged.
     *
     * Requirements:
     *
     * - the caller is `patient`, a live delegate of `patient`, or has `CUSTODIAN_ROLE`.
     * - the record exists and is not erased.
     *
     * Emits {RecordErased}.
     */
    function eraseRecord(address patient, bytes32 recordId) external {
        address caller = _msgSender();
        if (caller != patient && !_isLiveDelegate(patient, caller) && !hasRole(CUSTODIAN_ROLE, caller)) {
            revert NotPatientOrDelegate(patient, caller);
        }
        RecordState storage state = _records[patient][recordId];
        Record memory head = _checkLiveRecord(state, patient, recordId);
        state.head.erased = true;
        emit RecordErased(recordId, patient, caller, head.version);
    }

    // ---------------------------------------------------------------- disclosures

    /**
     * @notice Logs that `accessor` accessed the head version of record `recordId` of `patient` for `purpose`,
     * re-checking consent exactly as {isAuthorized}. Returns the authorizing consent.
     *
     * Requirements:
     *
     * - the caller has `CUSTODIAN_ROLE`.
     * - the record exists and is not erased.
     * - the access is authorized (see {isAuthorized}).
     *
     * Emits {AccessLogged}.
     */
    function logAccess(address patient, bytes32 recordId, address accessor, bytes32 purpose)
        external
        onlyRole(CUSTODIAN_ROLE)
        returns (bytes32 consentId)
    {
        Record memory head = _checkLiveRecord(_records[patient][recordId], patient, recordId);
        consentId = _authorizingConsent(patient, accessor, recordId, head.categoryIndex, purpose);
        if (consentId == 0) revert AccessNotAuthorized(patient, recordId, accessor, purpose);
        emit AccessLogged(recordId, patient, accessor, head.version, purpose, consentId);
    }

    /**
     * @notice Logs a break-glass (ETREAT) access by `accessor` to record `recordId` of `patient`, without
     * consent. `reasonHash` commits to the off-chain justification.
     *
     * Requirements:
     *
     * - the caller has `CUSTODIAN_ROLE`.
     * - the record exists and is not erased.
     * - `reasonHash` is not zero.
     * - `accessor` is an active provider holding `EMERGENCY_ROLE`.
     *
     * Emits {EmergencyAccessLogged}.
     */
    function logEmergencyAccess(address patient, bytes32 recordId, address accessor, bytes32 reasonHash)
        external
        onlyRole(CUSTODIAN_ROLE)
    {
        Record memory head = _checkLiveRecord(_records[patient][recordId], patient, recordId);
        if (reasonHash == 0) revert EmptyReason();
        if (!isActiveProvider(accessor) || !hasRole(EMERGENCY_ROLE, accessor)) revert NotEmergencyProvider(accessor);
        emit EmergencyAccessLogged(recordId, patient, accessor, head.version, reasonHash);
    }

    /**
     * @notice Anchors `root`, the Merkle root of the off-chain disclosure log after entries
     * `[fromIndex, toIndex)` were appended. Batches are contiguous: the new tree size is `toIndex`.
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

    // ---------------------------------------------------------------- views

    /**
     * @notice Whether `grantee` may access record `recordId` of `patient` for `purpose` now: the record exists
     * and is not erased, `grantee` is an active provider, `purpose` is not ETREAT, and a consent of `patient` to
     * `grantee` for `purpose` is active now with scope `recordId`, the record's category, or all records.
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
        Record memory head = _records[patient][recordId].head;
        if (head.author == address(0) || head.erased) return 0;
        return _authorizingConsent(patient, grantee, recordId, head.categoryIndex, purpose);
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
        return _providerFlags[account] == _PROVIDER;
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

    /// @notice The next nonce of `owner` for any of the three signed message types.
    function nonces(address owner) public view override(IConsentLedger, Nonces) returns (uint256) {
        return super.nonces(owner);
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

    /// @dev Mirrors `PROVIDER_ROLE` into `_providerFlags` so that "active provider" is a single SLOAD.
    function _grantRole(bytes32 role, address account) internal override returns (bool granted) {
        granted = super._grantRole(role, account);
        if (granted && role == PROVIDER_ROLE) _providerFlags[account] |= _PROVIDER;
    }

    /// @dev See {_grantRole}. Also covers {renounceRole}.
    function _revokeRole(bytes32 role, address account) internal override returns (bool revoked) {
        revoked = super._revokeRole(role, account);
        if (revoked && role == PROVIDER_ROLE) _providerFlags[account] &= ~_PROVIDER;
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
        // One SSTORE of the packed slot (the struct assignment would read-modify-write each member):
        // patient | validFrom << 160 | validUntil << 200, revoked = false. Both bounds were checked to fit uint40.
        Consent storage stored = _consents[consentId];
        assembly ("memory-safe") {
            sstore(stored.slot, or(patient, or(shl(160, validFrom), shl(200, validUntil))))
        }
        emit ConsentGranted(consentId, patient, grantee, scope, purpose, validFrom, validUntil, signer);
    }

    function _revokeConsent(bytes32 consentId, address patient, address signer) private {
        _consents[consentId].revoked = true;
        emit ConsentRevoked(consentId, patient, signer);
    }

    function _grantDelegate(address patient, address delegate, uint64 validUntil) private {
        if (delegate == address(0) || delegate == patient) revert InvalidDelegate(delegate);
        _delegations[patient][delegate] = Delegation({active: true, validUntil: validUntil});
        emit DelegateGranted(patient, delegate, validUntil);
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

    /**
     * @dev `keccak256(abi.encode(typehash, grant))`: the EIP-712 struct hash of a `ConsentGrant`. Its eight
     * members are static, so their ABI encoding is the 256 bytes of calldata at `grant`; the caller copied the
     * struct to memory first, which validated every field as clean. Hashing in place skips a re-encoding.
     */
    function _hashStruct(bytes32 typehash, ConsentGrant calldata grant) private pure returns (bytes32 structHash) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), grant, 0x100)
            structHash := keccak256(ptr, 0x120)
        }
    }

    function _checkDeadline(uint256 deadline) private view {
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
    }

    function _checkPatientOrLiveDelegate(address patient, address caller) private view {
        if (caller != patient && !_isLiveDelegate(patient, caller)) revert NotPatientOrDelegate(patient, caller);
    }

    /**
     * @dev Returns who authorized `digest` for `patient`: the ECDSA signer if it is the patient or (when
     * `allowDelegate`) a live delegate of the patient, else the patient if it is a contract accepting the
     * signature under ERC-1271. Reverts with {InvalidSigner} otherwise.
     */
    function _checkSigner(address patient, bytes32 digest, bytes calldata signature, bool allowDelegate)
        private
        view
        returns (address)
    {
        // The third value only details why recovery failed; any failure means "not the patient's key".
        // slither-disable-next-line unused-return
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err == ECDSA.RecoverError.NoError) {
            if (recovered == patient) return recovered;
            if (allowDelegate && _isLiveDelegate(patient, recovered)) return recovered;
        }
        if (patient.code.length != 0) {
            if (SignatureChecker.isValidERC1271SignatureNowCalldata(patient, digest, signature)) return patient;
        }
        revert InvalidSigner(patient, recovered);
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

    function _isActiveConsent(bytes32 consentId) private view returns (bool) {
        Consent memory c = _consents[consentId];
        return c.patient != address(0) && !c.revoked && c.validFrom <= block.timestamp
            && (c.validUntil == 0 || block.timestamp < c.validUntil);
    }

    // ---------------------------------------------------------------- internal: records

    function _checkActiveProvider(address account) private view {
        if (!isActiveProvider(account)) revert NotActiveProvider(account);
    }

    /// @dev Loads the head of a record, reverting if it does not exist or is erased.
    function _checkLiveRecord(RecordState storage state, address patient, bytes32 recordId)
        private
        view
        returns (Record memory head)
    {
        head = state.head;
        if (head.author == address(0)) revert UnknownRecord(patient, recordId);
        if (head.erased) revert RecordIsErased(recordId);
    }

    /// @dev {amendRecord} checks on a record, then bumps its version. Returns the new version and the category id.
    function _advanceVersion(RecordState storage state, address patient, bytes32 recordId, bytes32 previousHash)
        private
        returns (uint32 version, bytes32 category)
    {
        Record memory head = _checkLiveRecord(state, patient, recordId);
        address author = _msgSender();
        if (head.author != author) revert NotRecordAuthor(recordId, author);
        _checkActiveProvider(author);
        bytes32 currentHash = state.versionHash;
        if (previousHash != currentHash) revert StaleVersion(recordId, previousHash, currentHash);
        version = head.version + 1;
        state.head.version = version;
        category = _categoryIds[head.categoryIndex];
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
}
