// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {PatientAccount} from "../../src/PatientAccount.sol";
import {PatientAccountFactory} from "../../src/PatientAccountFactory.sol";
import {WebAuthnAssertions} from "./WebAuthnAssertions.sol";

/// @dev A factory, known P-256 device keys, and the account messages (AddPasskey, RemovePasskey) hashed
/// independently from their type strings.
abstract contract PasskeyFixture is WebAuthnAssertions {
    string internal constant ADD_PASSKEY_TYPE = "AddPasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)";
    string internal constant REMOVE_PASSKEY_TYPE =
        "RemovePasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)";
    string internal constant ACCOUNT_DOMAIN_TYPE =
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

    /// @dev P-256 private keys of a patient's devices, and of someone else's.
    uint256 internal constant PHONE_PK = 0xA11CE;
    uint256 internal constant LAPTOP_PK = 0x1A9709;
    uint256 internal constant TABLET_PK = 0x7AB1E7;
    uint256 internal constant OTHER_PATIENT_PK = 0xB0B;

    PatientAccountFactory internal factory;

    function _deployFactory() internal {
        factory = new PatientAccountFactory();
    }

    /// @dev The account whose first passkey is `privateKey`'s, created if needed.
    function _accountOf(uint256 privateKey) internal returns (PatientAccount) {
        (bytes32 qx, bytes32 qy) = _passkey(privateKey);
        return PatientAccount(factory.createAccount(qx, qy));
    }

    function _accountDigest(address account, bytes32 structHash) internal view returns (bytes32) {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256(bytes(ACCOUNT_DOMAIN_TYPE)),
                keccak256("Consent Ledger Patient Account"),
                keccak256("1"),
                block.chainid,
                account
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function _addDigest(address account, bytes32 qx, bytes32 qy, uint256 nonce, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        return
            _accountDigest(account, keccak256(abi.encode(keccak256(bytes(ADD_PASSKEY_TYPE)), qx, qy, nonce, deadline)));
    }

    function _removeDigest(address account, bytes32 qx, bytes32 qy, uint256 nonce, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        return _accountDigest(
            account, keccak256(abi.encode(keccak256(bytes(REMOVE_PASSKEY_TYPE)), qx, qy, nonce, deadline))
        );
    }

    /// @dev Adds `newPk`'s passkey to `account`, signed by `signerPk`, with nonce `nonce`.
    function _addPasskey(PatientAccount account, uint256 signerPk, uint256 newPk, uint256 nonce) internal {
        (bytes32 qx, bytes32 qy) = _passkey(newPk);
        uint256 deadline = block.timestamp + 1 hours;
        account.addPasskey(
            qx, qy, nonce, deadline, _assertion(signerPk, _addDigest(address(account), qx, qy, nonce, deadline))
        );
    }

    /// @dev Removes `removedPk`'s passkey from `account`, signed by `signerPk`, with nonce `nonce`.
    function _removePasskey(PatientAccount account, uint256 signerPk, uint256 removedPk, uint256 nonce) internal {
        (bytes32 qx, bytes32 qy) = _passkey(removedPk);
        uint256 deadline = block.timestamp + 1 hours;
        account.removePasskey(
            qx, qy, nonce, deadline, _assertion(signerPk, _removeDigest(address(account), qx, qy, nonce, deadline))
        );
    }
}
