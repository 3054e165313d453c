// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {TestBase} from "./Test.sol";

/// @dev Cheatcodes of forge that the minimal Vm.sol does not declare: P-256 keys and signatures, balances, logs.
interface VmPasskey {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    function signP256(uint256 privateKey, bytes32 digest) external pure returns (bytes32 r, bytes32 s);
    function publicKeyP256(uint256 privateKey) external pure returns (uint256 publicKeyX, uint256 publicKeyY);
    function deal(address account, uint256 newBalance) external;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);
}

/// @dev Builds WebAuthn assertions the way a browser's authenticator does, independently of the contracts'
/// libraries: clientDataJSON `{"type":"webauthn.get","challenge":"<base64url(challenge)>","origin":...,
/// "crossOrigin":false}`, authenticatorData `rpIdHash || flags || signCount`, and a P-256 signature (low s) of
/// `sha256(authenticatorData || sha256(clientDataJSON))`, ABI-encoded as `(r, s, challengeIndex, typeIndex,
/// authenticatorData, clientDataJSON)`.
abstract contract WebAuthnAssertions is TestBase {
    VmPasskey internal constant vmExt = VmPasskey(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev The order of the P-256 group.
    uint256 internal constant P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551;

    bytes1 internal constant FLAG_UP = 0x01;
    bytes1 internal constant FLAG_UV = 0x04;
    bytes1 internal constant FLAGS_UP_UV = 0x05;

    string internal constant WEBAUTHN_GET = "webauthn.get";
    string internal constant WEBAUTHN_CREATE = "webauthn.create";
    string internal constant ORIGIN = "https://portal.example";

    bytes internal constant BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    /// @dev The options of an assertion; {_defaultOptions} is what a honest authenticator produces.
    struct AssertionOptions {
        string type_;
        bytes1 flags;
        bool highS; // the malleated twin (n - s) of the signature
        uint32 signCount;
    }

    function _defaultOptions() internal pure returns (AssertionOptions memory) {
        return AssertionOptions({type_: WEBAUTHN_GET, flags: FLAGS_UP_UV, highS: false, signCount: 1});
    }

    /// @dev The public key of P-256 private key `privateKey`.
    function _passkey(uint256 privateKey) internal pure returns (bytes32 qx, bytes32 qy) {
        (uint256 x, uint256 y) = vmExt.publicKeyP256(privateKey);
        return (bytes32(x), bytes32(y));
    }

    /// @dev An honest assertion by `privateKey` over `challenge`.
    function _assertion(uint256 privateKey, bytes32 challenge) internal pure returns (bytes memory) {
        return _assertion(privateKey, challenge, _defaultOptions());
    }

    function _assertion(uint256 privateKey, bytes32 challenge, AssertionOptions memory options)
        internal
        pure
        returns (bytes memory)
    {
        string memory clientDataJSON = string.concat(
            '{"type":"',
            options.type_,
            '","challenge":"',
            _base64url(abi.encodePacked(challenge)),
            '","origin":"',
            ORIGIN,
            '","crossOrigin":false}'
        );
        uint256 typeIndex = 1; // after "{"
        uint256 challengeIndex = typeIndex + bytes('"type":"').length + bytes(options.type_).length + 2; // + '",'
        bytes memory authenticatorData = abi.encodePacked(sha256("portal.example"), options.flags, options.signCount);
        bytes32 digest = sha256(abi.encodePacked(authenticatorData, sha256(bytes(clientDataJSON))));
        (bytes32 r, bytes32 s) = vmExt.signP256(privateKey, digest);
        bool isHigh = uint256(s) > P256_N / 2;
        if (isHigh != options.highS) s = bytes32(P256_N - uint256(s));
        return abi.encode(r, s, challengeIndex, typeIndex, authenticatorData, clientDataJSON);
    }

    /// @dev RFC 4648 base64url without padding.
    function _base64url(bytes memory data) internal pure returns (string memory) {
        bytes memory out = new bytes((data.length * 4 + 2) / 3);
        uint256 o;
        for (uint256 i; i < data.length; i += 3) {
            uint256 chunk = uint256(uint8(data[i])) << 16;
            if (i + 1 < data.length) chunk |= uint256(uint8(data[i + 1])) << 8;
            if (i + 2 < data.length) chunk |= uint256(uint8(data[i + 2]));
            for (uint256 j; j < 4 && o < out.length; ++j) {
                out[o++] = BASE64URL[(chunk >> (18 - 6 * j)) & 0x3f];
            }
        }
        return string(out);
    }
}
