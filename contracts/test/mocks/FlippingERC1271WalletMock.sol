// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @dev A griefing contract account: it accepts its owner's ECDSA signatures under ERC-1271 in even blocks only.
/// An `eth_call` at the latest block N runs with `block.number` N, the transaction sent next is mined in N + 1, so
/// whenever N is even the relay's check passes and the relayed transaction reverts (tests/api/test_relay_griefing.py).
contract FlippingERC1271WalletMock is IERC1271 {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(hash, signature);
        if (block.number % 2 == 0 && err == ECDSA.RecoverError.NoError && recovered == owner) {
            return IERC1271.isValidSignature.selector;
        }
        return 0xffffffff;
    }
}
