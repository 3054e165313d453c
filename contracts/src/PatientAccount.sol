// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";
import {WebAuthn} from "@openzeppelin/contracts/utils/cryptography/WebAuthn.sol";
import {SignerP256} from "@openzeppelin/contracts/utils/cryptography/signers/SignerP256.sol";
import {SignerWebAuthn} from "@openzeppelin/contracts/utils/cryptography/signers/SignerWebAuthn.sol";

/// @title PatientAccount
/// @notice A patient's account on the Consent Ledger held by passkeys (WebAuthn, P-256) instead of an Ethereum
/// key: it answers ERC-1271 for the ledger's signed messages and manages its own passkeys, nothing else (no
/// `execute`, no ether). See docs/architecture.md, "Passkey accounts".
///
/// Each account is an ERC-1167 clone with immutable arguments made by {PatientAccountFactory}: the clone's code
/// carries its first passkey `(qx, qy)` (the *primary* passkey), and its CREATE2 address derives from that key,
/// so the key cannot be changed or front-run. The factory initializes the clone in the transaction that
/// deploys it; before that (and forever on the implementation contract itself) it accepts no signature.
///
/// A signature is an ABI-encoded {WebAuthn-WebAuthnAuth} assertion whose challenge is the signed 32-byte hash,
/// of type "webauthn.get", with the user-present and user-verified flags set. The primary passkey is tried
/// first, the others (in storage, up to {MAX_PASSKEYS} in all) only if it fails. Passkeys are added and removed
/// by EIP-712 messages signed, as an assertion, by one of the account's passkeys, relayed by anyone, with
/// unordered nonces (a bitmap as in Uniswap's Permit2).
///
/// OpenZeppelin's {SignerP256} storage is not used: the primary passkey is read from the clone's code.
contract PatientAccount is IERC1271, SignerWebAuthn, EIP712 {
    /// @notice The most passkeys an account holds at once.
    uint256 public constant MAX_PASSKEYS = 8;

    /// @notice EIP-712 type hash of the message that adds a passkey.
    bytes32 public constant ADD_PASSKEY_TYPEHASH =
        keccak256("AddPasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)");

    /// @notice EIP-712 type hash of the message that removes a passkey.
    bytes32 public constant REMOVE_PASSKEY_TYPEHASH =
        keccak256("RemovePasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)");

    // Every assertion needs the authenticator's user-verified flag (PIN or biometrics), not only user presence.
    bool private constant _REQUIRE_USER_VERIFICATION = true;

    // The clone's code: the 45-byte ERC-1167 proxy, then its immutable arguments `abi.encode(qx, qy)`.
    uint256 private constant _ARGS_OFFSET = 0x2d;

    /// @notice The factory that deploys and initializes the accounts (the deployer of the implementation).
    address public immutable factory;

    // The implementation contract's own address: it has no passkey and is never initialized.
    address private immutable _implementation;

    /// @dev A passkey's public key: a point of the P-256 curve.
    struct Passkey {
        bytes32 qx;
        bytes32 qy;
    }

    /// @dev One slot, read once per signature check.
    struct State {
        bool initialized;
        bool primaryRemoved;
        uint8 extraCount; // passkeys in `_extras`, besides the primary
    }

    State private _state;
    Passkey[MAX_PASSKEYS] private _extras;
    mapping(bytes32 keyHash => uint256 positionPlusOne) private _extraPositions;
    mapping(uint256 wordPos => uint256 bitmap) private _nonceBitmaps;

    /// @notice A passkey became one of the account's (the primary one at initialization).
    event PasskeyAdded(bytes32 qx, bytes32 qy);

    /// @notice A passkey stopped being one of the account's.
    event PasskeyRemoved(bytes32 qx, bytes32 qy);

    /// @notice {initialize} called by another account than the factory.
    error NotFactory(address caller);
    /// @notice {initialize} called on an initialized account or on the implementation.
    error AlreadyInitialized();
    /// @notice The key is not a point of the P-256 curve (the zero key included).
    error InvalidPasskey(bytes32 qx, bytes32 qy);
    /// @notice {addPasskey} of a key that is already one of the account's passkeys.
    error PasskeyAlreadyAdded(bytes32 qx, bytes32 qy);
    /// @notice {removePasskey} of a key that is not one of the account's passkeys.
    error UnknownPasskey(bytes32 qx, bytes32 qy);
    /// @notice {removePasskey} of the account's only passkey: the account would be lost.
    error LastPasskey(bytes32 qx, bytes32 qy);
    /// @notice {addPasskey} when the account already holds {MAX_PASSKEYS} passkeys.
    error TooManyPasskeys(uint256 max);
    /// @notice {passkeyAt} past the last passkey.
    error PasskeyIndexOutOfRange(uint256 index, uint256 count);
    /// @notice The message's deadline has passed.
    error SignatureExpired(uint256 deadline, uint256 timestamp);
    /// @notice The message's nonce was already used.
    error NonceAlreadyUsed(uint256 nonce);
    /// @notice The message is not signed by one of the account's passkeys.
    error InvalidSignature();

    /// @dev Deployed once, by the factory. {SignerP256} requires a point of the curve; its storage is never read
    /// ({signer} is overridden), so the generator is passed as a placeholder.
    constructor() SignerP256(bytes32(P256.GX), bytes32(P256.GY)) EIP712("Consent Ledger Patient Account", "1") {
        factory = msg.sender;
        _implementation = address(this);
    }

    /// @notice Activates a clone the factory has just deployed, once, and announces its primary passkey.
    /// @dev Only the factory may call it, in the transaction that deploys the clone.
    ///
    /// Emits {PasskeyAdded} with the primary passkey.
    function initialize() external {
        if (msg.sender != factory) revert NotFactory(msg.sender);
        if (_state.initialized || address(this) == _implementation) revert AlreadyInitialized();
        _state.initialized = true;
        (bytes32 qx, bytes32 qy) = _primary();
        emit PasskeyAdded(qx, qy);
    }

    // ---------------------------------------------------------------- ERC-1271

    /// @notice ERC-1271: `0x1626ba7e` if `signature` is a WebAuthn assertion by one of the account's passkeys over
    /// the challenge `hash` (see the contract's description), else `0xffffffff`. Never reverts on a malformed
    /// signature.
    /// @param hash the signed digest (for the Consent Ledger, an EIP-712 digest).
    /// @param signature `abi.encode(r, s, challengeIndex, typeIndex, authenticatorData, clientDataJSON)`.
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        return _rawSignatureValidation(hash, signature) ? IERC1271.isValidSignature.selector : bytes4(0xffffffff);
    }

    /// @dev Whether `signature` is a WebAuthn assertion over `hash` by one of the passkeys, with user presence
    /// and user verification: the primary passkey first, then the others in storage order.
    function _rawSignatureValidation(bytes32 hash, bytes calldata signature) internal view override returns (bool) {
        (bool decoded, WebAuthn.WebAuthnAuth calldata auth) = WebAuthn.tryDecodeAuth(signature);
        if (!decoded) return false;
        // OpenZeppelin 5.7's WebAuthn loads 32 bytes of the JSON at `typeIndex` before comparing it with the JSON's
        // length: an index far past the end would expand memory until the call runs out of gas instead of
        // answering "invalid".
        uint256 jsonLength = bytes(auth.clientDataJSON).length;
        if (auth.typeIndex >= jsonLength || auth.challengeIndex >= jsonLength) return false;
        State memory state = _state;
        if (!state.initialized) return false;
        bytes memory challenge = abi.encodePacked(hash);
        WebAuthn.WebAuthnAuth memory assertion = auth; // decoded once for every passkey tried
        if (!state.primaryRemoved) {
            (bytes32 qx, bytes32 qy) = _primary();
            if (WebAuthn.verify(challenge, assertion, qx, qy, _REQUIRE_USER_VERIFICATION)) return true;
        }
        for (uint256 i; i < state.extraCount; ++i) {
            Passkey storage passkey = _extras[i];
            if (WebAuthn.verify(challenge, assertion, passkey.qx, passkey.qy, _REQUIRE_USER_VERIFICATION)) return true;
        }
        return false;
    }

    // ---------------------------------------------------------------- passkeys

    /// @notice Adds passkey `(qx, qy)` (a new device), authorized by an EIP-712
    /// `AddPasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)` message signed by one of the account's
    /// passkeys. Anyone may relay it. Adding back a removed primary passkey makes it a passkey again.
    ///
    /// Requirements:
    ///
    /// - `block.timestamp <= deadline`; `nonce` is unused (it is consumed).
    /// - `signature` is a WebAuthn assertion of the message's digest by one of the account's passkeys.
    /// - `(qx, qy)` is a point of the P-256 curve and not yet one of the account's passkeys.
    /// - the account holds fewer than {MAX_PASSKEYS} passkeys.
    ///
    /// Emits {PasskeyAdded}.
    function addPasskey(bytes32 qx, bytes32 qy, uint256 nonce, uint256 deadline, bytes calldata signature) external {
        _authorize(ADD_PASSKEY_TYPEHASH, qx, qy, nonce, deadline, signature);
        if (!P256.isValidPublicKey(qx, qy)) revert InvalidPasskey(qx, qy);
        State memory state = _state;
        if (_isPasskey(state, qx, qy)) revert PasskeyAlreadyAdded(qx, qy);
        if (_count(state) >= MAX_PASSKEYS) revert TooManyPasskeys(MAX_PASSKEYS);
        if (_isPrimary(qx, qy)) {
            state.primaryRemoved = false;
        } else {
            _extras[state.extraCount] = Passkey(qx, qy);
            _extraPositions[_keyHash(qx, qy)] = ++state.extraCount;
        }
        _state = state;
        emit PasskeyAdded(qx, qy);
    }

    /// @notice Removes passkey `(qx, qy)` (a lost or retired device), authorized by an EIP-712
    /// `RemovePasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)` message signed by one of the account's
    /// passkeys (the removed one included). Anyone may relay it. The order of {passkeyAt} may change.
    ///
    /// Requirements:
    ///
    /// - `block.timestamp <= deadline`; `nonce` is unused (it is consumed).
    /// - `signature` is a WebAuthn assertion of the message's digest by one of the account's passkeys.
    /// - `(qx, qy)` is one of the account's passkeys, and not its last one.
    ///
    /// Emits {PasskeyRemoved}.
    function removePasskey(bytes32 qx, bytes32 qy, uint256 nonce, uint256 deadline, bytes calldata signature) external {
        _authorize(REMOVE_PASSKEY_TYPEHASH, qx, qy, nonce, deadline, signature);
        State memory state = _state;
        if (!_isPasskey(state, qx, qy)) revert UnknownPasskey(qx, qy);
        if (_count(state) == 1) revert LastPasskey(qx, qy);
        if (_isPrimary(qx, qy)) {
            state.primaryRemoved = true;
        } else {
            // swap with the last one and pop
            bytes32 keyHash = _keyHash(qx, qy);
            uint256 position = _extraPositions[keyHash];
            uint256 last = state.extraCount;
            if (position != last) {
                Passkey memory moved = _extras[last - 1];
                _extras[position - 1] = moved;
                _extraPositions[_keyHash(moved.qx, moved.qy)] = position;
            }
            delete _extras[last - 1];
            delete _extraPositions[keyHash];
            --state.extraCount;
        }
        _state = state;
        emit PasskeyRemoved(qx, qy);
    }

    // ---------------------------------------------------------------- views

    /// @notice The primary passkey (the one the account was created with) while it is one of the account's
    /// passkeys, else `(0, 0)` (removed, or the account not initialized).
    function signer() public view override returns (bytes32 qx, bytes32 qy) {
        State memory state = _state;
        if (state.initialized && !state.primaryRemoved) return _primary();
    }

    /// @notice How many passkeys the account holds (0 before initialization).
    function passkeyCount() external view returns (uint256) {
        return _count(_state);
    }

    /// @notice Whether `(qx, qy)` is one of the account's passkeys.
    function isPasskey(bytes32 qx, bytes32 qy) external view returns (bool) {
        return _isPasskey(_state, qx, qy);
    }

    /// @notice The `index`-th passkey, from 0 to `passkeyCount() - 1`: the primary first while it is a passkey,
    /// then the others.
    function passkeyAt(uint256 index) external view returns (bytes32 qx, bytes32 qy) {
        State memory state = _state;
        uint256 count = _count(state);
        if (index >= count) revert PasskeyIndexOutOfRange(index, count);
        if (!state.primaryRemoved) {
            if (index == 0) return _primary();
            --index;
        }
        Passkey storage passkey = _extras[index];
        return (passkey.qx, passkey.qy);
    }

    /// @notice Whether nonce `nonce` of the account's messages ({addPasskey}, {removePasskey}) is used.
    function nonceUsed(uint256 nonce) external view returns (bool) {
        // forge-lint: disable-next-line(incorrect-shift)
        return _nonceBitmaps[nonce >> 8] & (1 << (nonce & 0xff)) != 0;
    }

    // ---------------------------------------------------------------- internal

    /// @dev The primary passkey, from the clone's immutable arguments; `(0, 0)` on the implementation (whose code
    /// holds no arguments).
    function _primary() private view returns (bytes32 qx, bytes32 qy) {
        if (address(this) == _implementation) return (0, 0);
        assembly ("memory-safe") {
            extcodecopy(address(), 0x00, _ARGS_OFFSET, 0x40) // into scratch space
            qx := mload(0x00)
            qy := mload(0x20)
        }
    }

    function _isPrimary(bytes32 qx, bytes32 qy) private view returns (bool) {
        (bytes32 px, bytes32 py) = _primary();
        return qx == px && qy == py;
    }

    function _isPasskey(State memory state, bytes32 qx, bytes32 qy) private view returns (bool) {
        if (!state.initialized) return false;
        if (_isPrimary(qx, qy)) return !state.primaryRemoved;
        return _extraPositions[_keyHash(qx, qy)] != 0;
    }

    function _count(State memory state) private pure returns (uint256) {
        if (!state.initialized) return 0;
        return (state.primaryRemoved ? 0 : 1) + state.extraCount;
    }

    function _keyHash(bytes32 qx, bytes32 qy) private pure returns (bytes32) {
        return keccak256(abi.encode(qx, qy));
    }

    /// @dev Checks the deadline, consumes the nonce and checks that a passkey signed the message.
    function _authorize(
        bytes32 typehash,
        bytes32 qx,
        bytes32 qy,
        uint256 nonce,
        uint256 deadline,
        bytes calldata signature
    ) private {
        // A deadline bounds how long a signed message may wait for its relayer, at a granularity where a
        // validator's seconds of clock skew do not matter.
        // slither-disable-next-line timestamp
        if (block.timestamp > deadline) revert SignatureExpired(deadline, block.timestamp);
        _useNonce(nonce);
        bytes32 digest = _hashTypedDataV4(keccak256(abi.encode(typehash, qx, qy, nonce, deadline)));
        if (!_rawSignatureValidation(digest, signature)) revert InvalidSignature();
    }

    /// @dev Flips bit `nonce % 256` of word `nonce / 256`, reverting if it was set.
    function _useNonce(uint256 nonce) private {
        // forge-lint: disable-next-line(incorrect-shift)
        uint256 bit = 1 << (nonce & 0xff);
        uint256 flipped = _nonceBitmaps[nonce >> 8] ^= bit;
        if (flipped & bit == 0) revert NonceAlreadyUsed(nonce);
    }
}
