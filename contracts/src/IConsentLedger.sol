// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// @title IConsentLedger
/// @notice Public interface of the Consent Ledger, version 2 ("trust no operator", docs/architecture.md): every
/// act is either sent by the party it names or carried by an EIP-712 signature of that party, relayed by anyone.
/// No role lets the relayer, the admin or the batch anchorer act in another party's name.
///
/// Signatures are 65-byte ECDSA or, for a contract account, valid under ERC-1271. Nonces are unordered and per
/// signer (a bitmap, as Uniswap's Permit2): each (signer, nonce) pair is usable once, in any order, and a
/// delegate's signature consumes the delegate's nonce, never the patient's.
///
/// Identifiers:
/// - `consentId = keccak256(abi.encode(patient, grantee, scope, purpose))`: one consent per
///   (patient, grantee, scope, purpose); granting again replaces its window and clears a revocation.
/// - `recordId = keccak256(abi.encode(patient, author, salt))`, computed by {anchorRecord}.
/// - `categoryId = keccak256(bytes(code))` for a category code such as "laboratory".
/// - `versionHash = keccak256(abi.encode(recordId, version, patient, author, category, keccak256(cid),
///   commitment, previousHash))`, with `previousHash = 0` for version 1: a hash chain per record.
/// - `scope`: `bytes32(0)` = all the patient's records, else a record id or a category id.
/// - `purpose`: an HL7 v3 PurposeOfUse code, `bytes32("TREAT")`. ETREAT cannot be granted: it is
///   reachable only through {logEmergencyAccessBySig}. PATRQT by the patient itself, for its own record, needs
///   no consent: {logAccessBySig} logs it with `consentId = bytes32(0)` (right of access).
/// - `requestDigest`: the EIP-712 digest of the signed `AccessRequest` / `EmergencyAccessRequest`.
interface IConsentLedger {
    // ---------------------------------------------------------------- typed data (EIP-712)

    /// @dev `ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)`
    struct ConsentGrant {
        address patient;
        address grantee;
        bytes32 scope;
        bytes32 purpose;
        uint64 validFrom;
        uint64 validUntil;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)`
    struct ConsentRevoke {
        address patient;
        bytes32 consentId;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)`
    struct DelegateGrant {
        address patient;
        address delegate;
        uint64 validUntil;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `RecordAnchor(address patient,address author,bytes32 category,bytes32 salt,bytes cid,bytes32 commitment,uint256 nonce,uint256 deadline)`
    struct RecordAnchor {
        address patient;
        address author;
        bytes32 category;
        bytes32 salt;
        bytes cid;
        bytes32 commitment;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `RecordAmend(address patient,address author,bytes32 recordId,bytes cid,bytes32 commitment,bytes32 previousHash,uint256 nonce,uint256 deadline)`
    struct RecordAmend {
        address patient;
        address author;
        bytes32 recordId;
        bytes cid;
        bytes32 commitment;
        bytes32 previousHash;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `AccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 purpose,uint256 nonce,uint256 deadline)`
    struct AccessRequest {
        address patient;
        address accessor;
        bytes32 recordId;
        uint32 version;
        bytes32 purpose;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `EmergencyAccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 reasonHash,uint256 nonce,uint256 deadline)`
    struct EmergencyAccessRequest {
        address patient;
        address accessor;
        bytes32 recordId;
        uint32 version;
        bytes32 reasonHash;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `RecordErase(address patient,bytes32 recordId,uint256 nonce,uint256 deadline)`
    struct RecordErase {
        address patient;
        bytes32 recordId;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `DelegateRevoke(address patient,address delegate,uint256 nonce,uint256 deadline)`
    struct DelegateRevoke {
        address patient;
        address delegate;
        uint256 nonce;
        uint256 deadline;
    }

    /// @dev `EncryptionKey(address account,bytes32 publicKey,uint256 nonce,uint256 deadline)`
    struct EncryptionKey {
        address account;
        bytes32 publicKey;
        uint256 nonce;
        uint256 deadline;
    }

    /// @notice Stored state of one consent. `revokedByPatient`: the last revocation was the patient's own, so
    /// only the patient can grant it again (a delegate cannot undo it).
    struct Consent {
        address patient;
        uint40 validFrom;
        uint40 validUntil;
        bool revoked;
        bool revokedByPatient;
    }

    /// @notice Stored state of one record (its head version).
    struct Record {
        address author;
        uint32 version;
        uint16 categoryIndex;
        bool erased;
    }

    // ---------------------------------------------------------------- errors

    error ZeroAddress();
    error UnknownPurpose(bytes32 purpose);
    error PurposeNotGrantable(bytes32 purpose);
    error InvalidValidityWindow(uint64 validFrom, uint64 validUntil);
    error SignatureExpired(uint256 deadline, uint256 timestamp);
    /// @dev The signature is not the named party's (nor, where allowed, a live delegate's). `signer` is the
    /// ECDSA-recovered address, zero if recovery failed.
    error InvalidSigner(address party, address signer);
    error NonceAlreadyUsed(address signer, uint256 nonce);
    /// @dev A delegate tried to grant a consent the patient revoked themselves.
    error RevokedByPatient(bytes32 consentId);
    /// @dev An access request names a version the record does not have (versions are 1 to the head).
    error UnknownVersion(bytes32 recordId, uint32 version);
    error NotPatientOrDelegate(address patient, address caller);
    error UnknownConsent(bytes32 consentId);
    error ConsentAlreadyRevoked(bytes32 consentId);
    error InvalidDelegate(address delegate);
    error UnknownCategory(bytes32 category);
    error CategoryAlreadyRegistered(bytes32 category);
    error EmptyCategoryCode();
    error NotActiveProvider(address account);
    error AlreadySuspended(address provider);
    error NotSuspended(address provider);
    error EmptyCid();
    error RecordAlreadyExists(bytes32 recordId);
    error UnknownRecord(address patient, bytes32 recordId);
    error RecordIsErased(bytes32 recordId);
    error NotRecordAuthor(bytes32 recordId, address caller);
    error StaleVersion(bytes32 recordId, bytes32 expectedPrevious, bytes32 actualHead);
    /// @dev No consent authorizes the access request, and it is not the patient's own PATRQT request.
    error AccessNotAuthorized(address patient, bytes32 recordId, address accessor, bytes32 purpose);
    error NotEmergencyProvider(address accessor);
    error EmptyReason();
    error InvalidBatch(uint64 expectedFrom, uint64 from, uint64 to);
    /// @dev {anchorDisclosureBatch} with a zero root.
    error EmptyBatchRoot();

    // ---------------------------------------------------------------- events

    event CategoryRegistered(bytes32 indexed categoryId, uint16 indexed index, string code);
    event ProviderOnboarded(address indexed provider, string name);
    event ProviderSuspended(address indexed provider, address indexed by);
    event ProviderReinstated(address indexed provider, address indexed by);

    /// @param signer the patient or the delegate who authorized the grant.
    event ConsentGranted(
        bytes32 indexed consentId,
        address indexed patient,
        address indexed grantee,
        bytes32 scope,
        bytes32 purpose,
        uint64 validFrom,
        uint64 validUntil,
        address signer
    );
    event ConsentRevoked(bytes32 indexed consentId, address indexed patient, address signer);
    event DelegateGranted(address indexed patient, address indexed delegate, uint64 validUntil);
    event DelegateRevoked(address indexed patient, address indexed delegate);
    /// @notice `signer` cancelled `nonce`: a message it signed with that nonce can no longer be used.
    event NonceInvalidated(address indexed signer, uint256 nonce);
    /// @notice `account` published the X25519 public key key shares are sealed to (docs/architecture.md).
    event EncryptionKeySet(address indexed account, bytes32 publicKey);

    event RecordAnchored(
        bytes32 indexed recordId,
        address indexed patient,
        address indexed author,
        uint32 version,
        bytes32 category,
        bytes cid,
        bytes32 commitment,
        bytes32 previousHash,
        bytes32 versionHash
    );
    /// @param erasedBy the patient or the live delegate who signed (or sent) the erasure.
    event RecordErased(bytes32 indexed recordId, address indexed patient, address erasedBy, uint32 version);

    /// @param consentId the consent that authorized the access; `bytes32(0)` for the patient's own PATRQT request.
    event AccessLogged(
        bytes32 indexed recordId,
        address indexed patient,
        address indexed accessor,
        uint32 version,
        bytes32 purpose,
        bytes32 consentId,
        bytes32 requestDigest
    );
    event EmergencyAccessLogged(
        bytes32 indexed recordId,
        address indexed patient,
        address indexed accessor,
        uint32 version,
        bytes32 reasonHash,
        bytes32 requestDigest
    );
    /// @param fromIndex first disclosure-log entry covered; `toIndex` is exclusive and is the new tree size.
    event DisclosureBatchAnchored(bytes32 indexed root, uint64 fromIndex, uint64 toIndex);

    // ---------------------------------------------------------------- administration (DEFAULT_ADMIN_ROLE)

    function registerCategory(string calldata code) external returns (bytes32 categoryId);
    function onboardProvider(address provider, string calldata name) external;
    function suspendProvider(address provider) external;
    function reinstateProvider(address provider) external;

    // ---------------------------------------------------------------- consent

    function grantConsent(
        address patient,
        address grantee,
        bytes32 scope,
        bytes32 purpose,
        uint64 validFrom,
        uint64 validUntil
    ) external returns (bytes32 consentId);
    function grantConsentBySig(ConsentGrant calldata grant, bytes calldata signature)
        external
        returns (bytes32 consentId);
    function revokeConsent(bytes32 consentId) external;
    function revokeConsentBySig(ConsentRevoke calldata revoke, bytes calldata signature) external;
    function grantDelegate(address delegate, uint64 validUntil) external;
    function grantDelegateBySig(DelegateGrant calldata grant, bytes calldata signature) external;
    function revokeDelegate(address delegate) external;
    function revokeDelegateBySig(DelegateRevoke calldata revoke, bytes calldata signature) external;

    // ---------------------------------------------------------------- records

    function anchorRecord(address patient, bytes32 category, bytes32 salt, bytes calldata cid, bytes32 commitment)
        external
        returns (bytes32 recordId);
    function amendRecord(
        address patient,
        bytes32 recordId,
        bytes calldata cid,
        bytes32 commitment,
        bytes32 previousHash
    ) external returns (uint32 version);
    function anchorRecordBySig(RecordAnchor calldata anchor, bytes calldata signature)
        external
        returns (bytes32 recordId);
    function amendRecordBySig(RecordAmend calldata amend, bytes calldata signature) external returns (uint32 version);
    function eraseRecord(address patient, bytes32 recordId) external;
    function eraseRecordBySig(RecordErase calldata erase, bytes calldata signature) external;

    // ---------------------------------------------------------------- disclosures

    function logAccessBySig(AccessRequest calldata request, bytes calldata signature)
        external
        returns (bytes32 consentId);
    function logEmergencyAccessBySig(EmergencyAccessRequest calldata request, bytes calldata signature) external;
    /// @dev CUSTODIAN_ROLE (the hub's batch anchorer): the only operator act; each leaf holds a signed request.
    function anchorDisclosureBatch(bytes32 root, uint64 fromIndex, uint64 toIndex) external;

    // ---------------------------------------------------------------- nonces and encryption keys

    function invalidateNonce(uint256 nonce) external;
    function setEncryptionKey(bytes32 publicKey) external;
    function setEncryptionKeyBySig(EncryptionKey calldata key, bytes calldata signature) external;

    // ---------------------------------------------------------------- views

    function isAuthorized(address patient, address grantee, bytes32 recordId, bytes32 purpose)
        external
        view
        returns (bool);
    /// @return consentId the consent that authorizes the access now, or `bytes32(0)` if none does.
    function authorizingConsent(address patient, address grantee, bytes32 recordId, bytes32 purpose)
        external
        view
        returns (bytes32 consentId);
    function consent(bytes32 consentId) external view returns (Consent memory);
    function consentIdOf(address patient, address grantee, bytes32 scope, bytes32 purpose)
        external
        pure
        returns (bytes32);
    /// @return validUntil of the delegation (0 = no expiry) and whether it is live now.
    function delegation(address patient, address delegate) external view returns (uint64 validUntil, bool live);
    function isLiveDelegate(address patient, address delegate) external view returns (bool);
    function record(address patient, bytes32 recordId) external view returns (Record memory, bytes32 head);
    function recordIdOf(address patient, address author, bytes32 salt) external pure returns (bytes32);
    function categoryId(uint16 index) external view returns (bytes32);
    function categoryCount() external view returns (uint16);
    function isActiveProvider(address account) external view returns (bool);
    function isSuspended(address provider) external view returns (bool);
    function providerName(address provider) external view returns (string memory);
    function disclosureBatchHead() external view returns (bytes32 root, uint64 size);
    function nonceUsed(address signer, uint256 nonce) external view returns (bool);
    /// @return bitmap bit `i` is set iff nonce `wordPos * 256 + i` of `signer` is used.
    function nonceBitmap(address signer, uint256 wordPos) external view returns (uint256 bitmap);
    function encryptionKeyOf(address account) external view returns (bytes32);
    /// @return the EIP-712 digest of `request`, as carried by {AccessLogged}.
    function accessRequestDigest(AccessRequest calldata request) external view returns (bytes32);
    // forge-lint: disable-next-line(mixed-case-function)
    function DOMAIN_SEPARATOR() external view returns (bytes32);
}
