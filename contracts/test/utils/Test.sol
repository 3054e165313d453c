// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Vm} from "./Vm.sol";

/// @dev A minimal replacement for forge-std, which cannot be installed on these machines (offline; npm only
/// carries an outdated unofficial copy). `TestBase` provides the cheatcode handle and forge-std's `bound` (also
/// for invariant handlers); `Test` adds the `targetContracts`/`targetSelectors` hooks that forge's invariant
/// runner calls on a test contract. Assertions are forge's assertion cheatcodes (`vm.assertEq`, ...), which
/// revert on failure.
abstract contract TestBase {
    /// @dev The address forge serves cheatcodes at.
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev Maps `x` into `[min, max]` (forge-std's algorithm: values already in range are kept, and the
    /// smallest/largest inputs map to the edges so the fuzzer's edge-case dictionary stays useful).
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256 result) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1; // cannot overflow: [0, max uint] is handled above
        if (x <= 3 && size > x) return min + x;
        if (x >= type(uint256).max - 3 && size > type(uint256).max - x) return max - (type(uint256).max - x);
        if (x > max) {
            uint256 rem = (x - max) % size;
            if (rem == 0) return max;
            result = min + rem - 1;
        } else {
            uint256 rem = (min - x) % size;
            if (rem == 0) return min;
            result = max - rem + 1;
        }
    }
}

abstract contract Test is TestBase {
    /// @dev Layout expected by forge for `targetSelectors()`.
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetedContracts;
    FuzzSelector[] private _targetedSelectors;

    /// @dev Invariant runner hook: the contracts whose functions are called at random.
    function targetContracts() public view returns (address[] memory) {
        return _targetedContracts;
    }

    /// @dev Invariant runner hook: restricts the calls to these selectors.
    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }

    function targetContract(address target) internal {
        _targetedContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal {
        _targetedSelectors.push(selector);
    }
}
