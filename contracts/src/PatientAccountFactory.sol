// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {P256} from "@openzeppelin/contracts/utils/cryptography/P256.sol";

import {PatientAccount} from "./PatientAccount.sol";

/// @title PatientAccountFactory
/// @notice Deploys the patients' passkey accounts ({PatientAccount}) at addresses that depend on their first
/// passkey only: ERC-1167 clones of one implementation, with the passkey as immutable arguments, by CREATE2 with
/// salt `keccak256(abi.encode(qx, qy))`. Anyone may create an account (a relayer does it for the patient);
/// only the passkey's holder can sign for it. See docs/architecture.md, "Passkey accounts".
contract PatientAccountFactory {
    /// @notice The account implementation every clone delegates to, deployed by this factory.
    address public immutable implementation;

    /// @notice Account `account` was deployed with first passkey `(qx, qy)`.
    event AccountCreated(address indexed account, bytes32 qx, bytes32 qy);

    /// @notice The key is not a point of the P-256 curve (the zero key included).
    error InvalidPasskey(bytes32 qx, bytes32 qy);

    constructor() {
        implementation = address(new PatientAccount());
    }

    /// @notice The account whose first passkey is `(qx, qy)`, deployed and initialized if it does not exist yet.
    /// Calling it again for a deployed account returns the same address and changes nothing, so a relayer may
    /// retry it safely.
    ///
    /// Requirements:
    ///
    /// - `(qx, qy)` is a point of the P-256 curve.
    ///
    /// Emits {AccountCreated} when it deploys the account (and the account emits
    /// {PatientAccount-PasskeyAdded}).
    function createAccount(bytes32 qx, bytes32 qy) external returns (address account) {
        if (!P256.isValidPublicKey(qx, qy)) revert InvalidPasskey(qx, qy);
        bytes memory args = abi.encode(qx, qy);
        bytes32 salt = keccak256(args);
        address existing = Clones.predictDeterministicAddressWithImmutableArgs(implementation, args, salt);
        // Only this factory deploys at that address, and it initializes in the same transaction: code there is an
        // initialized account.
        if (existing.code.length != 0) return existing;
        account = Clones.cloneDeterministicWithImmutableArgs(implementation, args, salt);
        emit AccountCreated(account, qx, qy);
        PatientAccount(account).initialize();
    }

    /// @notice The address of the account whose first passkey is `(qx, qy)`, whether it is deployed or not.
    function accountOf(bytes32 qx, bytes32 qy) external view returns (address) {
        bytes memory args = abi.encode(qx, qy);
        return Clones.predictDeterministicAddressWithImmutableArgs(implementation, args, keccak256(args));
    }
}
