// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev EIP-712: type strings, domain, relayed grants/revocations/delegations, replay and cross-domain refusal,
/// delegate and ERC-1271 signers.
contract ConsentLedgerSignaturesTest is LedgerFixture {
    // ------------------------------------------------------------ typed data

    function test_TypehashesMatchTypeStrings() public view {
        vm.assertEq(
            ledger.CONSENT_GRANT_TYPEHASH(),
            keccak256(
                "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)"
            )
        );
        vm.assertEq(
            ledger.CONSENT_REVOKE_TYPEHASH(),
            keccak256("ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)")
        );
        vm.assertEq(
            ledger.DELEGATE_GRANT_TYPEHASH(),
            keccak256(
                "DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)"
            )
        );
    }

    function test_DomainSeparator() public view {
        vm.assertEq(
            ledger.DOMAIN_SEPARATOR(),
            keccak256(
                abi.encode(
                    keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                    keccak256("ConsentLedger"),
                    keccak256("1"),
                    block.chainid,
                    address(ledger)
                )
            )
        );
        (, string memory name, string memory version, uint256 chainId, address verifyingContract,,) =
            ledger.eip712Domain();
        vm.assertEq(name, "ConsentLedger");
        vm.assertEq(version, "1");
        vm.assertEq(chainId, block.chainid);
        vm.assertEq(verifyingContract, address(ledger));
    }

    function test_DomainSeparatorFollowsChainId() public {
        vm.chainId(4242);
        vm.assertEq(ledger.DOMAIN_SEPARATOR(), _domainSeparator(address(ledger), 4242));
    }

    // ------------------------------------------------------------ grantConsentBySig

    function test_GrantBySig() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.scope = LABORATORY;
        g.purpose = HRESCH;
        g.validFrom = uint64(block.timestamp + 1 days);
        g.validUntil = uint64(block.timestamp + 30 days);
        bytes32 id = _consentId(patient, provider, LABORATORY, HRESCH);
        bytes memory sig = _signGrant(PATIENT_PK, g);

        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(
            id, patient, provider, LABORATORY, HRESCH, g.validFrom, g.validUntil, patient
        );
        vm.prank(stranger); // anyone relays
        vm.assertEq(ledger.grantConsentBySig(g, sig), id);

        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertEq(c.patient, patient);
        vm.assertEq(c.validFrom, g.validFrom);
        vm.assertEq(c.validUntil, g.validUntil);
        vm.assertEq(ledger.nonces(patient), 1);
    }

    function test_GrantBySig_AtDeadline() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.deadline = block.timestamp;
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
    }

    function test_GrantBySig_NoncesAreSequential() public {
        for (uint256 i; i < 3; ++i) {
            IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
            vm.assertEq(g.nonce, i);
            g.purpose = [TREAT, HPAYMT, HOPERAT][i];
            ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        }
        vm.assertEq(ledger.nonces(patient), 3);
    }

    function test_RevertWhen_GrantSignatureReplayed() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        ledger.grantConsentBySig(g, sig);
        vm.expectRevert(abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, patient, 1));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantReplayedAfterRevocation() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        bytes32 id = ledger.grantConsentBySig(g, sig);
        vm.prank(patient);
        ledger.revokeConsent(id);
        // a relayer cannot resurrect the consent with the old signature
        vm.expectRevert(abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, patient, 1));
        ledger.grantConsentBySig(g, sig);
        vm.assertTrue(ledger.consent(id).revoked);
    }

    function test_RevertWhen_GrantNonceIsAhead() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.nonce = 1;
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, patient, 0));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignatureExpired() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.warp(g.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, g.deadline, g.deadline + 1));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedForAnotherChain() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g); // signed for the current chain id
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        (address recovered,,) = _recover(g, _domainSeparator(address(ledger), original + 1), sig);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, recovered));
        ledger.grantConsentBySig(g, sig);
        // and it still works on the chain it was signed for
        vm.chainId(original);
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedForAnotherLedger() public {
        ConsentLedger other = new ConsentLedger(admin);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sigForOther = _sign(
            PATIENT_PK,
            keccak256(abi.encodePacked("\x19\x01", _domainSeparator(address(other), block.chainid), _hash(g)))
        );
        other.grantConsentBySig(g, sigForOther); // valid where it was meant to be used
        (address recovered,,) = _recover(g, ledger.DOMAIN_SEPARATOR(), sigForOther);
        vm.assertNotEq(recovered, patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, recovered));
        ledger.grantConsentBySig(g, sigForOther);
    }

    function test_RevertWhen_GrantSignedByRandomKey() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(STRANGER_PK, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, stranger));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedByGrantee() public {
        uint256 granteePk = 0xD1;
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(granteePk, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, provider));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantMessageTampered() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        g.validUntil = uint64(block.timestamp + 365 days); // relayer widens the window
        (address recovered,,) = _recover(g, ledger.DOMAIN_SEPARATOR(), sig);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, recovered));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignatureIsMalformed() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, address(0)));
        ledger.grantConsentBySig(g, hex"1234");
        bytes memory sig = _signGrant(PATIENT_PK, g);
        sig[64] = bytes1(uint8(29)); // invalid v
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, address(0)));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignatureIsMalleable() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(PATIENT_PK, _digest(_hash(g)));
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        bytes memory highS = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, address(0)));
        ledger.grantConsentBySig(g, highS);
    }

    function test_RevertWhen_GrantBySigIsInvalid() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.purpose = ETREAT;
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.PurposeNotGrantable.selector, ETREAT));
        ledger.grantConsentBySig(g, sig);

        g = _grantMsg(patient);
        g.validFrom = 10;
        g.validUntil = 5;
        sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidValidityWindow.selector, 10, 5));
        ledger.grantConsentBySig(g, sig);

        g = _grantMsg(patient);
        g.grantee = address(0);
        sig = _signGrant(PATIENT_PK, g);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantConsentBySig(g, sig);
        vm.assertEq(ledger.nonces(patient), 0, "failed grants use no nonce");
    }

    function test_RevertWhen_GrantBySigPatientIsZero() public {
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(0));
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
    }

    // ------------------------------------------------------------ delegate signatures

    function test_GrantBySig_LiveDelegate() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1 days));
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes32 id = _consentId(patient, provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, patient, provider, 0, TREAT, 0, 0, delegate);
        ledger.grantConsentBySig(g, _signGrant(DELEGATE_PK, g));
        vm.assertEq(ledger.nonces(patient), 1, "the patient's nonce");
        vm.assertEq(ledger.nonces(delegate), 0);
    }

    function test_RevertWhen_GrantSignedByExpiredDelegate() public {
        _delegate(patient, delegate, uint64(block.timestamp + 1 days));
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.deadline = block.timestamp + 2 days;
        bytes memory sig = _signGrant(DELEGATE_PK, g);
        vm.warp(block.timestamp + 1 days);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, delegate));
        ledger.grantConsentBySig(g, sig);
    }

    function test_RevertWhen_GrantSignedByRevokedDelegate() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        bytes memory sig = _signGrant(DELEGATE_PK, g); // signed while live
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, delegate));
        ledger.grantConsentBySig(g, sig);
    }

    // ------------------------------------------------------------ revokeConsentBySig

    function test_RevokeBySig() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, patient);
        vm.prank(stranger);
        ledger.revokeConsentBySig(r, sig);
        vm.assertTrue(ledger.consent(id).revoked);
        vm.assertEq(ledger.nonces(patient), 1);
    }

    function test_RevokeBySig_LiveDelegate() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentRevoked(id, patient, delegate);
        ledger.revokeConsentBySig(r, _signRevoke(DELEGATE_PK, r));
        vm.assertTrue(ledger.consent(id).revoked);
    }

    function test_RevertWhen_RevokeSignedByRevokedDelegate() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        _delegate(patient, delegate, 0);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(DELEGATE_PK, r);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, delegate));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignatureReplayed() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        ledger.revokeConsentBySig(r, sig);
        _grant(patient, provider, 0, TREAT); // re-granted: the old revocation must not apply again
        vm.expectRevert(abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, patient, 1));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignatureExpired() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        vm.warp(r.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, r.deadline, r.deadline + 1));
        ledger.revokeConsentBySig(r, sig);
    }

    function test_RevertWhen_RevokeSignedByRandomKey() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, stranger));
        ledger.revokeConsentBySig(r, _signRevoke(STRANGER_PK, r));
    }

    function test_RevertWhen_RevokeBySigConsentIsUnknown() public {
        bytes32 id = _consentId(patient, provider, 0, TREAT);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownConsent.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
    }

    function test_RevertWhen_RevokeBySigPatientMismatch() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        // the stranger signs a revocation of the patient's consent naming itself as patient
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(stranger, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownConsent.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(STRANGER_PK, r));
    }

    function test_RevertWhen_RevokeBySigAlreadyRevoked() public {
        bytes32 id = _grant(patient, provider, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.ConsentAlreadyRevoked.selector, id));
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
    }

    // ------------------------------------------------------------ grantDelegateBySig

    function test_GrantDelegateBySig() public {
        uint64 until = uint64(block.timestamp + 90 days);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, until);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DelegateGranted(patient, delegate, until);
        vm.prank(stranger);
        ledger.grantDelegateBySig(d, _signDelegate(PATIENT_PK, d));
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
        vm.assertEq(ledger.nonces(patient), 1);
    }

    function test_NoncesAreSharedAcrossMessageTypes() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        ledger.grantDelegateBySig(d, _signDelegate(PATIENT_PK, d));
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.assertEq(g.nonce, 1);
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(patient, id);
        vm.assertEq(r.nonce, 2);
        ledger.revokeConsentBySig(r, _signRevoke(PATIENT_PK, r));
        vm.assertEq(ledger.nonces(patient), 3);
    }

    function test_RevertWhen_DelegateGrantSignedByDelegate() public {
        _delegate(patient, delegate, 0);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, stranger, 0);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, delegate));
        ledger.grantDelegateBySig(d, _signDelegate(DELEGATE_PK, d));
    }

    function test_RevertWhen_DelegateGrantReplayed() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        bytes memory sig = _signDelegate(PATIENT_PK, d);
        ledger.grantDelegateBySig(d, sig);
        vm.prank(patient);
        ledger.revokeDelegate(delegate);
        vm.expectRevert(abi.encodeWithSelector(Nonces.InvalidAccountNonce.selector, patient, 1));
        ledger.grantDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateGrantExpired() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, delegate, 0);
        bytes memory sig = _signDelegate(PATIENT_PK, d);
        vm.warp(d.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, d.deadline, d.deadline + 1));
        ledger.grantDelegateBySig(d, sig);
    }

    function test_RevertWhen_DelegateGrantSignedByRandomKey() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, stranger, 0);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, stranger));
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
    }

    function test_RevertWhen_DelegateGrantPatientIsZero() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(address(0), delegate, 0);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
    }

    function test_RevertWhen_DelegateGrantDelegateIsPatient() public {
        IConsentLedger.DelegateGrant memory d = _delegateMsg(patient, patient, 0);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidDelegate.selector, patient));
        ledger.grantDelegateBySig(d, _signDelegate(PATIENT_PK, d));
    }

    // ------------------------------------------------------------ ERC-1271 patient wallets

    function test_GrantBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        bytes32 id = _consentId(address(wallet), provider, 0, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.ConsentGranted(id, address(wallet), provider, 0, TREAT, 0, 0, address(wallet));
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
        vm.assertEq(ledger.consent(id).patient, address(wallet));
        vm.assertEq(ledger.nonces(address(wallet)), 1);
    }

    function test_RevokeBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        bytes32 id = ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
        IConsentLedger.ConsentRevoke memory r = _revokeMsg(address(wallet), id);
        ledger.revokeConsentBySig(r, _signRevoke(STRANGER_PK, r));
        vm.assertTrue(ledger.consent(id).revoked);
    }

    function test_GrantDelegateBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.DelegateGrant memory d = _delegateMsg(address(wallet), delegate, 0);
        ledger.grantDelegateBySig(d, _signDelegate(STRANGER_PK, d));
        vm.assertTrue(ledger.isLiveDelegate(address(wallet), delegate));
    }

    function test_Grant_ERC1271WalletDirect() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        vm.prank(stranger);
        wallet.execute(
            address(ledger),
            abi.encodeCall(IConsentLedger.grantConsent, (address(wallet), provider, bytes32(0), TREAT, 0, 0))
        );
        vm.assertEq(ledger.consent(_consentId(address(wallet), provider, 0, TREAT)).patient, address(wallet));
    }

    function test_RevertWhen_ERC1271WalletRejects() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        wallet.setRejectAll(true);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, address(wallet), stranger));
        ledger.grantConsentBySig(g, _signGrant(STRANGER_PK, g));
    }

    function test_RevertWhen_ERC1271WalletSignedByNonOwner() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        IConsentLedger.ConsentGrant memory g = _grantMsg(address(wallet));
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, address(wallet), patient));
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
    }

    function test_RevertWhen_PatientWithoutCodeAndBadSignature() public {
        // an EOA patient never goes through ERC-1271, even with an empty signature
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidSigner.selector, patient, address(0)));
        ledger.grantConsentBySig(g, "");
    }

    // ------------------------------------------------------------ helpers

    function _recover(IConsentLedger.ConsentGrant memory g, bytes32 domainSeparator, bytes memory sig)
        internal
        pure
        returns (address recovered, bytes32 r, bytes32 s)
    {
        uint8 v;
        assembly ("memory-safe") {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        recovered = ecrecover(keccak256(abi.encodePacked("\x19\x01", domainSeparator, _hash(g))), v, r, s);
    }
}
