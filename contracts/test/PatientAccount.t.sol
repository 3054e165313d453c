// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IERC1271} from "@openzeppelin/contracts/interfaces/IERC1271.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";

import {PatientAccount} from "../src/PatientAccount.sol";
import {PatientAccountFactory} from "../src/PatientAccountFactory.sol";
import {PasskeyFixture} from "./utils/PasskeyFixture.sol";
import {Test} from "./utils/Test.sol";

/// @dev Plays someone who deploys clones of the account implementation itself, outside the factory.
contract CloneDeployer {
    function cloneWithArgs(address implementation, bytes32 qx, bytes32 qy) external returns (address) {
        return Clones.cloneWithImmutableArgs(implementation, abi.encode(qx, qy));
    }
}

/// @dev The passkey account: ERC-1271 answers to real WebAuthn assertions (and to forged, malformed and replayed
/// ones), passkey management by signed messages, and the factory (determinism, idempotence, initialization).
contract PatientAccountTest is Test, PasskeyFixture {
    bytes4 internal constant MAGIC = 0x1626ba7e;
    bytes4 internal constant INVALID = 0xffffffff;
    bytes32 internal constant HASH = keccak256("an EIP-712 digest of the ledger");

    PatientAccount internal account;
    bytes32 internal phoneX;
    bytes32 internal phoneY;

    function setUp() public {
        _deployFactory();
        (phoneX, phoneY) = _passkey(PHONE_PK);
        account = _accountOf(PHONE_PK);
    }

    function _answer(bytes memory signature) internal view returns (bytes4) {
        return account.isValidSignature(HASH, signature);
    }

    function _assertValid(bytes memory signature, string memory what) internal view {
        vm.assertEq(bytes32(_answer(signature)), bytes32(MAGIC), what);
    }

    function _assertInvalid(bytes memory signature, string memory what) internal view {
        vm.assertEq(bytes32(_answer(signature)), bytes32(INVALID), what);
    }

    // ------------------------------------------------------------ the assertion builder

    function test_Base64urlMatchesRfc4648() public pure {
        // sha256("") in base64url without padding, as a browser puts a challenge in clientDataJSON
        vm.assertEq(_base64url(abi.encodePacked(sha256(""))), "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
        vm.assertEq(_base64url("f"), "Zg");
        vm.assertEq(_base64url("fo"), "Zm8");
        vm.assertEq(_base64url("foo"), "Zm9v");
        vm.assertEq(_base64url(hex"fbff"), "-_8");
    }

    // ------------------------------------------------------------ ERC-1271

    function test_IsValidSignature_PrimaryPasskey() public view {
        _assertValid(_assertion(PHONE_PK, HASH), "an assertion by the account's passkey");
    }

    function test_IsValidSignature_RejectsWrongChallenge() public view {
        _assertInvalid(_assertion(PHONE_PK, keccak256("another digest")), "challenge of another hash");
    }

    function test_IsValidSignature_RejectsCreateType() public view {
        AssertionOptions memory options = _defaultOptions();
        options.type_ = WEBAUTHN_CREATE;
        _assertInvalid(_assertion(PHONE_PK, HASH, options), "a registration, not an assertion");
    }

    function test_IsValidSignature_RejectsUserNotVerified() public view {
        AssertionOptions memory options = _defaultOptions();
        options.flags = FLAG_UP; // presence without verification (no PIN or biometrics)
        _assertInvalid(_assertion(PHONE_PK, HASH, options), "UV flag missing");
    }

    function test_IsValidSignature_RejectsUserNotPresent() public view {
        AssertionOptions memory options = _defaultOptions();
        options.flags = FLAG_UV;
        _assertInvalid(_assertion(PHONE_PK, HASH, options), "UP flag missing");
    }

    function test_IsValidSignature_RejectsMalleatedHighS() public view {
        AssertionOptions memory options = _defaultOptions();
        options.highS = true; // (r, n - s): valid for ECDSA over P-256, refused as malleable
        _assertInvalid(_assertion(PHONE_PK, HASH, options), "high s");
    }

    function test_IsValidSignature_RejectsAnotherAccountsPasskey() public {
        PatientAccount other = _accountOf(OTHER_PATIENT_PK);
        bytes memory signature = _assertion(OTHER_PATIENT_PK, HASH);
        vm.assertEq(bytes32(other.isValidSignature(HASH, signature)), bytes32(MAGIC), "valid for its own account");
        _assertInvalid(signature, "not for this one");
    }

    function test_IsValidSignature_RejectsRawP256AndEcdsa() public view {
        bytes memory assertion = _assertion(PHONE_PK, HASH);
        (bytes32 r, bytes32 s) = abi.decode(assertion, (bytes32, bytes32));
        _assertInvalid(abi.encodePacked(r, s), "raw P-256 (r, s) over the hash");
        (bytes32 r2, bytes32 s2) = vmExt.signP256(PHONE_PK, HASH);
        _assertInvalid(abi.encodePacked(r2, s2), "raw P-256 (r, s) over the hash, signed directly");
        _assertInvalid(abi.encodePacked(r, s, uint8(27)), "a 65-byte ECDSA-shaped signature");
    }

    function test_IsValidSignature_TamperedAssertion() public view {
        bytes memory assertion = _assertion(PHONE_PK, HASH);
        (bytes32 r, bytes32 s, uint256 challengeIndex, uint256 typeIndex, bytes memory authData, string memory json) =
            abi.decode(assertion, (bytes32, bytes32, uint256, uint256, bytes, string));
        bytes memory otherOrigin = bytes(json);
        otherOrigin[otherOrigin.length - 25] = "X"; // inside the origin: the signed JSON changes
        _assertInvalid(
            abi.encode(r, s, challengeIndex, typeIndex, authData, string(otherOrigin)), "clientDataJSON tampered"
        );
        bytes memory otherCounter = bytes.concat(authData);
        otherCounter[36] = 0x02; // the signature counter
        _assertInvalid(abi.encode(r, s, challengeIndex, typeIndex, otherCounter, json), "authenticatorData tampered");
        _assertInvalid(abi.encode(r, s, challengeIndex + 1, typeIndex, authData, json), "challengeIndex moved");
        _assertInvalid(abi.encode(r, s, challengeIndex, typeIndex + 1, authData, json), "typeIndex moved");
        _assertInvalid(abi.encode(r, bytes32(uint256(s) ^ 1), challengeIndex, typeIndex, authData, json), "s changed");
    }

    function test_IsValidSignature_GarbageIsInvalid() public view {
        bytes memory assertion = _assertion(PHONE_PK, HASH);
        _assertInvalid("", "empty");
        _assertInvalid(hex"00", "one byte");
        _assertInvalid(new bytes(0xc0), "six zero words");
        // the encoding ends with the JSON's last word: without it the JSON's length points past the end
        bytes memory truncated = new bytes(assertion.length - 32);
        for (uint256 i; i < truncated.length; ++i) {
            truncated[i] = assertion[i];
        }
        _assertInvalid(truncated, "truncated by a word");
        bytes memory head = new bytes(0xc0);
        for (uint256 i; i < 0xc0; ++i) {
            head[i] = assertion[i];
        }
        _assertInvalid(head, "head only: offsets past the end");
        // bytes after the encoding are ignored, as by any ABI decoder: harmless, as nonces (not signature bytes)
        // stop a replay
        _assertValid(abi.encodePacked(assertion, hex"00"), "trailing byte");
    }

    /// @dev WebAuthn reads 32 bytes at `typeIndex` before it compares the index with the JSON's length: an index
    /// far past the end must not expand memory until the call runs out of gas (a relayer would pay for it, and
    /// ERC-1271 callers would see a revert instead of an answer).
    function test_IsValidSignature_HugeIndexesAnswerCheaply() public view {
        bytes memory assertion = _assertion(PHONE_PK, HASH);
        (bytes32 r, bytes32 s, uint256 challengeIndex, uint256 typeIndex, bytes memory authData, string memory json) =
            abi.decode(assertion, (bytes32, bytes32, uint256, uint256, bytes, string));
        uint256[3] memory huge = [uint256(1 << 40), 1 << 200, type(uint256).max];
        for (uint256 i; i < huge.length; ++i) {
            bytes memory byType = abi.encode(r, s, challengeIndex, huge[i], authData, json);
            bytes memory byChallenge = abi.encode(r, s, huge[i], typeIndex, authData, json);
            _assertAnswersWithin(byType, 100_000, "huge typeIndex");
            _assertAnswersWithin(byChallenge, 100_000, "huge challengeIndex");
        }
    }

    function _assertAnswersWithin(bytes memory signature, uint256 gasLimit, string memory what) internal view {
        (bool ok, bytes memory answer) =
            address(account).staticcall{gas: gasLimit}(abi.encodeCall(IERC1271.isValidSignature, (HASH, signature)));
        vm.assertTrue(ok, what);
        vm.assertEq(bytes32(abi.decode(answer, (bytes4))), bytes32(INVALID), what);
    }

    function testFuzz_IsValidSignature_NeverRevertsOnGarbage(bytes calldata signature) public view {
        _assertInvalid(signature, "random bytes");
    }

    function testFuzz_IsValidSignature_NeverRevertsOnMalformedAssertion(
        uint256 challengeIndex,
        uint256 typeIndex,
        bytes calldata authData,
        string calldata json
    ) public view {
        (bytes32 r, bytes32 s) = vmExt.signP256(PHONE_PK, HASH);
        _assertInvalid(abi.encode(r, s, challengeIndex, typeIndex, authData, json), "well-formed garbage");
    }

    /// @dev The P-256 precompile (EIP-7951, Osaka) does the verification, not OpenZeppelin's Solidity fallback
    /// (which costs about 200,000 gas).
    function test_IsValidSignature_UsesThePrecompile() public view {
        bytes memory signature = _assertion(PHONE_PK, HASH);
        uint256 before = gasleft();
        bytes4 answer = account.isValidSignature(HASH, signature);
        uint256 used = before - gasleft();
        vm.assertEq(bytes32(answer), bytes32(MAGIC));
        vm.assertLe(used, 40_000, "an ERC-1271 check of the primary passkey");
        // and the precompile answers at 0x100: the Wycheproof vector OpenZeppelin probes it with
        (bool ok, bytes memory out) = address(0x100)
            .staticcall(
                abi.encode(
                    0xbb5a52f42f9c9261ed4361f59422a1e30036e7c32b270c8807a419feca605023,
                    5,
                    1,
                    0xa71af64de5126a4a4e02b7922d66ce9415ce88a4c9d25514d91082c8725ac957,
                    0x5d47723c8fbe580bb369fec9c2665d8e30a435b9932645482e7c9f11e872296b
                )
            );
        vm.assertTrue(ok && out.length == 32 && abi.decode(out, (uint256)) == 1, "P256VERIFY at 0x100");
    }

    // ------------------------------------------------------------ the implementation and clones outside the factory

    function test_ImplementationAcceptsNothing() public {
        PatientAccount implementation = PatientAccount(factory.implementation());
        // its SignerP256 placeholder is the generator, whose private key is 1: still no signature is accepted
        vm.assertEq(bytes32(implementation.isValidSignature(HASH, _assertion(1, HASH))), bytes32(INVALID));
        vm.assertEq(implementation.passkeyCount(), 0);
        (bytes32 qx, bytes32 qy) = implementation.signer();
        vm.assertEq(qx, bytes32(0));
        vm.assertEq(qy, bytes32(0));
        vm.prank(address(factory));
        vm.expectRevert(PatientAccount.AlreadyInitialized.selector);
        implementation.initialize();
    }

    /// @dev Front-running: nobody but the factory can initialize an account, and a clone someone deploys
    /// outside the factory (with the passkey of their choice) stays unusable.
    function test_RevertWhen_InitializedByAnyoneButTheFactory() public {
        vm.prank(address(0xBAD));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.NotFactory.selector, address(0xBAD)));
        account.initialize();

        CloneDeployer attacker = new CloneDeployer();
        (bytes32 qx, bytes32 qy) = _passkey(OTHER_PATIENT_PK);
        PatientAccount rogue = PatientAccount(attacker.cloneWithArgs(factory.implementation(), qx, qy));
        vm.assertEq(
            bytes32(rogue.isValidSignature(HASH, _assertion(OTHER_PATIENT_PK, HASH))),
            bytes32(INVALID),
            "an uninitialized clone accepts nothing"
        );
        vm.assertEq(rogue.passkeyCount(), 0);
        vm.prank(address(attacker));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.NotFactory.selector, address(attacker)));
        rogue.initialize();
        vm.assertTrue(address(rogue) != factory.accountOf(qx, qy), "not the patient's address");
    }

    function test_RevertWhen_InitializedTwice() public {
        vm.prank(address(factory));
        vm.expectRevert(PatientAccount.AlreadyInitialized.selector);
        account.initialize();
    }

    // ------------------------------------------------------------ factory

    function test_Factory_AccountOfIsTheCreatedAddress() public {
        (bytes32 qx, bytes32 qy) = _passkey(OTHER_PATIENT_PK);
        address predicted = factory.accountOf(qx, qy);
        vm.assertEq(predicted.code.length, 0, "not deployed yet");
        vm.expectEmit(true, false, false, true, address(factory));
        emit PatientAccountFactory.AccountCreated(predicted, qx, qy);
        vm.expectEmit(false, false, false, true, predicted);
        emit PatientAccount.PasskeyAdded(qx, qy);
        vm.prank(address(0x7E1A7)); // any relayer
        address created = factory.createAccount(qx, qy);
        vm.assertEq(created, predicted);
        vm.assertEq(PatientAccount(created).factory(), address(factory));
        vm.assertEq(PatientAccount(created).passkeyCount(), 1);
        vm.assertTrue(PatientAccount(created).isPasskey(qx, qy));
        (bytes32 sx, bytes32 sy) = PatientAccount(created).signer();
        vm.assertEq(sx, qx);
        vm.assertEq(sy, qy);
        // the address is CREATE2(factory, keccak256(abi.encode(qx, qy)), clone code with the passkey)
        vm.assertEq(
            created,
            Clones.predictDeterministicAddressWithImmutableArgs(
                factory.implementation(), abi.encode(qx, qy), keccak256(abi.encode(qx, qy)), address(factory)
            )
        );
    }

    function test_Factory_CreateAccountIsIdempotent() public {
        vmExt.recordLogs();
        address again = factory.createAccount(phoneX, phoneY);
        vm.assertEq(again, address(account));
        vm.assertEq(vmExt.getRecordedLogs().length, 0, "no event, nothing deployed");
        vm.assertEq(account.passkeyCount(), 1);
    }

    function test_Factory_AccountOfDependsOnThePasskeyOnly() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        vm.assertTrue(factory.accountOf(qx, qy) != address(account));
        vm.assertEq(factory.accountOf(phoneX, phoneY), address(account));
        PatientAccountFactory otherFactory = new PatientAccountFactory();
        vm.assertTrue(otherFactory.accountOf(phoneX, phoneY) != address(account), "and on the factory");
    }

    function test_RevertWhen_FactoryKeyIsNotOnTheCurve() public {
        vm.expectRevert(abi.encodeWithSelector(PatientAccountFactory.InvalidPasskey.selector, phoneX, ~phoneY));
        factory.createAccount(phoneX, ~phoneY);
        vm.expectRevert(abi.encodeWithSelector(PatientAccountFactory.InvalidPasskey.selector, bytes32(0), bytes32(0)));
        factory.createAccount(0, 0);
        // coordinates not reduced modulo p
        bytes32 p = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF;
        vm.expectRevert(abi.encodeWithSelector(PatientAccountFactory.InvalidPasskey.selector, p, bytes32(0)));
        factory.createAccount(p, 0);
    }

    // ------------------------------------------------------------ adding passkeys

    function test_AddPasskey_ThenSignWithIt() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        _assertInvalid(_assertion(LAPTOP_PK, HASH), "not yet a passkey");
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, 7, deadline));
        vm.expectEmit(false, false, false, true, address(account));
        emit PatientAccount.PasskeyAdded(qx, qy);
        vm.prank(address(0x7E1A7)); // relayed by anyone
        account.addPasskey(qx, qy, 7, deadline, signature);

        vm.assertEq(account.passkeyCount(), 2);
        vm.assertTrue(account.isPasskey(qx, qy));
        vm.assertTrue(account.nonceUsed(7));
        (bytes32 ax, bytes32 ay) = account.passkeyAt(1);
        vm.assertEq(ax, qx);
        vm.assertEq(ay, qy);
        (ax, ay) = account.passkeyAt(0);
        vm.assertEq(ax, phoneX, "the primary first");
        _assertValid(_assertion(LAPTOP_PK, HASH), "the new device signs");
        _assertValid(_assertion(PHONE_PK, HASH), "and the first one still does");
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.PasskeyIndexOutOfRange.selector, 2, 2));
        account.passkeyAt(2);
    }

    function test_AddPasskey_SignedByASecondaryPasskey() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        _addPasskey(account, LAPTOP_PK, TABLET_PK, 2);
        _assertValid(_assertion(TABLET_PK, HASH), "added by the laptop");
        vm.assertEq(account.passkeyCount(), 3);
    }

    function test_RevertWhen_AddPasskeySignedByANonMember() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 digest = _addDigest(address(account), qx, qy, 1, deadline);
        bytes memory byItself = _assertion(LAPTOP_PK, digest); // the new key vouching for itself
        bytes memory byStranger = _assertion(OTHER_PATIENT_PK, digest);
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 1, deadline, byItself);
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 1, deadline, byStranger);
        vm.assertFalse(account.isPasskey(qx, qy));
        vm.assertFalse(account.nonceUsed(1), "a refused message spends no nonce");
    }

    function test_RevertWhen_AddPasskeyMessageTampered() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        (bytes32 ox, bytes32 oy) = _passkey(OTHER_PATIENT_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, 1, deadline));
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(ox, oy, 1, deadline, signature); // the attacker's key instead of the laptop's
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 1, deadline + 1, signature);
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 2, deadline, signature);
        // a RemovePasskey signature does not add
        signature = _assertion(PHONE_PK, _removeDigest(address(account), qx, qy, 1, deadline));
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 1, deadline, signature);
    }

    /// @dev The domain's verifyingContract is the account: a message signed for one account by a passkey both
    /// accounts hold does not work on the other.
    function test_RevertWhen_AddPasskeySignedForAnotherAccount() public {
        PatientAccount laptopAccount = _accountOf(LAPTOP_PK);
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1); // the laptop is a passkey of both accounts
        (bytes32 qx, bytes32 qy) = _passkey(OTHER_PATIENT_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(LAPTOP_PK, _addDigest(address(laptopAccount), qx, qy, 2, deadline));
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 2, deadline, signature);
        laptopAccount.addPasskey(qx, qy, 2, deadline, signature); // where it was meant for
        vm.assertTrue(laptopAccount.isPasskey(qx, qy));
    }

    function test_RevertWhen_AddPasskeySignedForAnotherChain() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, 1, deadline));
        vm.chainId(block.chainid + 1);
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.addPasskey(qx, qy, 1, deadline, signature);
    }

    function test_RevertWhen_AddPasskeyNonceReplayed() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, 1, deadline));
        account.addPasskey(qx, qy, 1, deadline, signature);
        _removePasskey(account, PHONE_PK, LAPTOP_PK, 2);
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.NonceAlreadyUsed.selector, 1));
        account.addPasskey(qx, qy, 1, deadline, signature); // the removed laptop cannot be put back with it
        vm.assertFalse(account.isPasskey(qx, qy));
    }

    function test_AddPasskey_NoncesInAnyOrder() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 300);
        _addPasskey(account, PHONE_PK, TABLET_PK, 5);
        vm.assertTrue(account.nonceUsed(300));
        vm.assertTrue(account.nonceUsed(5));
        vm.assertFalse(account.nonceUsed(6));
        vm.assertFalse(account.nonceUsed(0));
    }

    function test_RevertWhen_AddPasskeyExpired() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, 1, deadline));
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.SignatureExpired.selector, deadline, deadline + 1));
        account.addPasskey(qx, qy, 1, deadline, signature);
        vm.warp(deadline);
        account.addPasskey(qx, qy, 1, deadline, signature); // the deadline itself is still in time
    }

    function test_RevertWhen_AddPasskeyIsNotOnTheCurve() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 badY = ~phoneY;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), phoneX, badY, 1, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.InvalidPasskey.selector, phoneX, badY));
        account.addPasskey(phoneX, badY, 1, deadline, signature);
        signature = _assertion(PHONE_PK, _addDigest(address(account), 0, 0, 1, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.InvalidPasskey.selector, bytes32(0), bytes32(0)));
        account.addPasskey(0, 0, 1, deadline, signature);
    }

    function test_RevertWhen_AddPasskeyAlreadyAdded() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), phoneX, phoneY, 1, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.PasskeyAlreadyAdded.selector, phoneX, phoneY));
        account.addPasskey(phoneX, phoneY, 1, deadline, signature);
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 2);
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, 3, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.PasskeyAlreadyAdded.selector, qx, qy));
        account.addPasskey(qx, qy, 3, deadline, signature);
    }

    function test_RevertWhen_TooManyPasskeys() public {
        uint256 max = account.MAX_PASSKEYS();
        vm.assertEq(max, 8);
        for (uint256 i = 1; i < max; ++i) {
            _addPasskey(account, PHONE_PK, 0x1000 + i, i);
        }
        vm.assertEq(account.passkeyCount(), max);
        _assertValid(_assertion(0x1000 + max - 1, HASH), "the last one tried still signs");
        (bytes32 qx, bytes32 qy) = _passkey(0x2000);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _addDigest(address(account), qx, qy, max, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.TooManyPasskeys.selector, max));
        account.addPasskey(qx, qy, max, deadline, signature);
        // without the primary there is room for one more, and no more
        _removePasskey(account, 0x1001, PHONE_PK, 100);
        _addPasskey(account, 0x1001, 0x2000, 101);
        vm.assertEq(account.passkeyCount(), max);
        signature = _assertion(0x1001, _addDigest(address(account), phoneX, phoneY, 102, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.TooManyPasskeys.selector, max));
        account.addPasskey(phoneX, phoneY, 102, deadline, signature);
    }

    // ------------------------------------------------------------ removing passkeys

    function test_RemovePasskey() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _removeDigest(address(account), qx, qy, 2, deadline));
        vm.expectEmit(false, false, false, true, address(account));
        emit PatientAccount.PasskeyRemoved(qx, qy);
        account.removePasskey(qx, qy, 2, deadline, signature);
        vm.assertFalse(account.isPasskey(qx, qy));
        vm.assertEq(account.passkeyCount(), 1);
        _assertInvalid(_assertion(LAPTOP_PK, HASH), "the removed device no longer signs");
        _assertValid(_assertion(PHONE_PK, HASH), "the other one does");
    }

    /// @dev A lost first device: the second removes it, and the account lives on under the second.
    function test_RemovePasskey_Primary() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        _removePasskey(account, LAPTOP_PK, PHONE_PK, 2);
        vm.assertFalse(account.isPasskey(phoneX, phoneY));
        vm.assertEq(account.passkeyCount(), 1);
        _assertInvalid(_assertion(PHONE_PK, HASH), "the lost phone no longer signs");
        _assertValid(_assertion(LAPTOP_PK, HASH), "the laptop does");
        (bytes32 sx, bytes32 sy) = account.signer();
        vm.assertEq(sx, bytes32(0), "no primary passkey any more");
        vm.assertEq(sy, bytes32(0));
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        (bytes32 ax, bytes32 ay) = account.passkeyAt(0);
        vm.assertEq(ax, qx);
        vm.assertEq(ay, qy);
        // the phone can be added back
        _addPasskey(account, LAPTOP_PK, PHONE_PK, 3);
        vm.assertTrue(account.isPasskey(phoneX, phoneY));
        _assertValid(_assertion(PHONE_PK, HASH), "the phone again");
        vm.assertEq(account.passkeyCount(), 2);
    }

    function test_RemovePasskey_SelfRemoval() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        _removePasskey(account, LAPTOP_PK, LAPTOP_PK, 2);
        _assertInvalid(_assertion(LAPTOP_PK, HASH), "removed itself");
    }

    function test_RemovePasskey_KeepsTheOthers() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        _addPasskey(account, PHONE_PK, TABLET_PK, 2);
        _addPasskey(account, PHONE_PK, OTHER_PATIENT_PK, 3);
        _removePasskey(account, PHONE_PK, LAPTOP_PK, 4); // from the middle: the last one moves into its place
        vm.assertEq(account.passkeyCount(), 3);
        _assertInvalid(_assertion(LAPTOP_PK, HASH), "removed");
        _assertValid(_assertion(TABLET_PK, HASH), "kept");
        _assertValid(_assertion(OTHER_PATIENT_PK, HASH), "kept, moved");
        _removePasskey(account, PHONE_PK, OTHER_PATIENT_PK, 5); // the moved one is still found
        _assertInvalid(_assertion(OTHER_PATIENT_PK, HASH), "removed after the move");
        (bytes32 qx, bytes32 qy) = _passkey(TABLET_PK);
        (bytes32 ax, bytes32 ay) = account.passkeyAt(1);
        vm.assertEq(ax, qx);
        vm.assertEq(ay, qy);
        vm.assertEq(account.passkeyCount(), 2);
    }

    function test_RevertWhen_RemoveLastPasskey() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _removeDigest(address(account), phoneX, phoneY, 1, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.LastPasskey.selector, phoneX, phoneY));
        account.removePasskey(phoneX, phoneY, 1, deadline, signature);
        // nor the last one left after the primary's removal
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 2);
        _removePasskey(account, LAPTOP_PK, PHONE_PK, 3);
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        signature = _assertion(LAPTOP_PK, _removeDigest(address(account), qx, qy, 4, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.LastPasskey.selector, qx, qy));
        account.removePasskey(qx, qy, 4, deadline, signature);
    }

    function test_RevertWhen_RemoveUnknownPasskey() public {
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _removeDigest(address(account), qx, qy, 1, deadline));
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.UnknownPasskey.selector, qx, qy));
        account.removePasskey(qx, qy, 1, deadline, signature);
    }

    function test_RevertWhen_RemovePasskeySignedByANonMember() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature =
            _assertion(OTHER_PATIENT_PK, _removeDigest(address(account), phoneX, phoneY, 2, deadline));
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.removePasskey(phoneX, phoneY, 2, deadline, signature);
        // nor by a removed one
        _removePasskey(account, PHONE_PK, LAPTOP_PK, 3);
        _addPasskey(account, PHONE_PK, TABLET_PK, 4);
        signature = _assertion(LAPTOP_PK, _removeDigest(address(account), phoneX, phoneY, 5, deadline));
        vm.expectRevert(PatientAccount.InvalidSignature.selector);
        account.removePasskey(phoneX, phoneY, 5, deadline, signature);
    }

    function test_RevertWhen_RemovePasskeyExpiredOrReplayed() public {
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 1);
        (bytes32 qx, bytes32 qy) = _passkey(LAPTOP_PK);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory signature = _assertion(PHONE_PK, _removeDigest(address(account), qx, qy, 2, deadline));
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.SignatureExpired.selector, deadline, deadline + 1));
        account.removePasskey(qx, qy, 2, deadline, signature);
        vm.warp(deadline);
        account.removePasskey(qx, qy, 2, deadline, signature);
        _addPasskey(account, PHONE_PK, LAPTOP_PK, 3);
        vm.expectRevert(abi.encodeWithSelector(PatientAccount.NonceAlreadyUsed.selector, 2));
        account.removePasskey(qx, qy, 2, deadline, signature);
        vm.assertTrue(account.isPasskey(qx, qy));
    }

    function test_AccountTakesNoEther() public {
        vmExt.deal(address(this), 1 ether);
        (bool ok,) = address(account).call{value: 1}("");
        vm.assertFalse(ok, "no receive");
        (ok,) = address(account).call{value: 1}(abi.encodeCall(PatientAccount.passkeyCount, ()));
        vm.assertFalse(ok, "no payable function");
        vm.assertEq(address(account).balance, 0);
    }
}
