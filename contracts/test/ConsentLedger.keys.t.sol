// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Encryption keys: each account publishes its own, directly or by signature.
contract ConsentLedgerKeysTest is LedgerFixture {
    bytes32 internal constant OTHER_KEY = keccak256("another X25519 public key");

    function test_SetEncryptionKey() public {
        vm.assertEq(ledger.encryptionKeyOf(provider), bytes32(0));
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.EncryptionKeySet(provider, PUBLIC_KEY);
        vm.prank(provider);
        ledger.setEncryptionKey(PUBLIC_KEY);
        vm.assertEq(ledger.encryptionKeyOf(provider), PUBLIC_KEY);
        vm.assertEq(ledger.encryptionKeyOf(provider2), bytes32(0));
    }

    function test_SetEncryptionKey_AgainReplaces() public {
        vm.startPrank(patient);
        ledger.setEncryptionKey(PUBLIC_KEY);
        ledger.setEncryptionKey(OTHER_KEY);
        vm.stopPrank();
        vm.assertEq(ledger.encryptionKeyOf(patient), OTHER_KEY);
    }

    function test_RevertWhen_EncryptionKeyIsZero() public {
        vm.prank(patient);
        vm.expectRevert(ConsentLedger.EmptyPublicKey.selector);
        ledger.setEncryptionKey(0);
    }

    function test_SetEncryptionKeyBySig() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, PUBLIC_KEY);
        bytes memory sig = _signKey(PROVIDER_PK, k);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.EncryptionKeySet(provider, PUBLIC_KEY);
        vm.prank(stranger);
        ledger.setEncryptionKeyBySig(k, sig);
        vm.assertEq(ledger.encryptionKeyOf(provider), PUBLIC_KEY);
        vm.assertTrue(ledger.nonceUsed(provider, k.nonce));
    }

    function test_SetEncryptionKeyBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.EncryptionKey memory k = _keyMsg(address(wallet), PUBLIC_KEY);
        ledger.setEncryptionKeyBySig(k, _signKey(STRANGER_PK, k));
        vm.assertEq(ledger.encryptionKeyOf(address(wallet)), PUBLIC_KEY);
        vm.assertEq(ledger.encryptionKeyOf(stranger), bytes32(0));
    }

    function test_RevertWhen_EncryptionKeyBySigIsZero() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, 0);
        bytes memory sig = _signKey(PROVIDER_PK, k);
        vm.expectRevert(ConsentLedger.EmptyPublicKey.selector);
        ledger.setEncryptionKeyBySig(k, sig);
    }

    /// @dev The operator cannot swap a provider's key for one it holds the secret of.
    function test_RevertWhen_EncryptionKeySignedByAnotherAccount() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, OTHER_KEY);
        vm.expectRevert(_invalidSigner(provider, custodian));
        ledger.setEncryptionKeyBySig(k, _signKey(CUSTODIAN_PK, k));
        vm.expectRevert(_invalidSigner(provider, admin));
        ledger.setEncryptionKeyBySig(k, _signKey(ADMIN_PK, k));
        vm.expectRevert(_invalidSigner(provider, stranger));
        ledger.setEncryptionKeyBySig(k, _signKey(STRANGER_PK, k));
    }

    function test_RevertWhen_EncryptionKeyReplayed() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, PUBLIC_KEY);
        bytes memory sig = _signKey(PROVIDER_PK, k);
        ledger.setEncryptionKeyBySig(k, sig);
        vm.prank(provider);
        ledger.setEncryptionKey(OTHER_KEY); // rotated: the old message must not bring the old key back
        vm.expectRevert(_nonceUsed(provider, k.nonce));
        ledger.setEncryptionKeyBySig(k, sig);
        vm.assertEq(ledger.encryptionKeyOf(provider), OTHER_KEY);
    }

    function test_RevertWhen_EncryptionKeyExpired() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, PUBLIC_KEY);
        bytes memory sig = _signKey(PROVIDER_PK, k);
        vm.warp(k.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, k.deadline, k.deadline + 1));
        ledger.setEncryptionKeyBySig(k, sig);
    }

    function test_RevertWhen_EncryptionKeySignedForAnotherChain() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, PUBLIC_KEY);
        bytes memory sig = _signKey(PROVIDER_PK, k);
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        vm.expectRevert(
            _invalidSigner(provider, _recovered(_hash(k), _domainSeparator(address(ledger), original + 1), sig))
        );
        ledger.setEncryptionKeyBySig(k, sig);
    }

    function test_RevertWhen_EncryptionKeySignedForAnotherLedger() public {
        IConsentLedger.EncryptionKey memory k = _keyMsg(provider, PUBLIC_KEY);
        bytes memory sig = _signFor(PROVIDER_PK, address(0xBEEF), block.chainid, _hash(k));
        vm.expectRevert(_invalidSigner(provider, _recovered(_hash(k), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.setEncryptionKeyBySig(k, sig);
    }
}
