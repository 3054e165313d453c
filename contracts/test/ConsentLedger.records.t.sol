// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Record anchoring, amendment (hash chain) and erasure, sent by the party itself or signed by it and
/// relayed; no one else (relayer, admin, custodian) can do any of it in that party's name.
contract ConsentLedgerRecordsTest is LedgerFixture {
    bytes internal constant CID2 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";

    function _versionHash(
        bytes32 recordId,
        uint32 version,
        address patient_,
        address author,
        bytes32 category,
        bytes memory cid,
        bytes32 commitment,
        bytes32 previousHash
    ) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(recordId, version, patient_, author, category, keccak256(cid), commitment, previousHash)
        );
    }

    // ------------------------------------------------------------ anchorRecord

    function test_AnchorRecord() public {
        bytes32 salt = "salt";
        bytes32 recordId = keccak256(abi.encode(patient, provider, salt));
        bytes32 vh = _versionHash(recordId, 1, patient, provider, IMAGING, CID, COMMITMENT, 0);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordAnchored(recordId, patient, provider, 1, IMAGING, CID, COMMITMENT, 0, vh);
        vm.prank(provider);
        vm.assertEq(ledger.anchorRecord(patient, IMAGING, "salt", CID, COMMITMENT), recordId);

        (IConsentLedger.Record memory r, bytes32 head) = ledger.record(patient, recordId);
        vm.assertEq(r.author, provider);
        vm.assertEq(r.version, 1);
        vm.assertEq(r.categoryIndex, 2);
        vm.assertFalse(r.erased);
        vm.assertEq(head, vh);
        vm.assertEq(ledger.recordIdOf(patient, provider, "salt"), recordId);
    }

    function test_AnchorRecord_SameSaltOtherAuthorOrPatient() public {
        bytes32 a = _anchor(patient, "salt");
        vm.prank(provider2);
        bytes32 b = ledger.anchorRecord(patient, LABORATORY, "salt", CID, COMMITMENT);
        vm.prank(provider);
        bytes32 c = ledger.anchorRecord(stranger, LABORATORY, "salt", CID, COMMITMENT);
        vm.assertNotEq(a, b);
        vm.assertNotEq(a, c);
        vm.assertNotEq(b, c);
    }

    function test_RecordIsScopedToItsPatient() public {
        bytes32 recordId = _anchor(patient, "salt");
        (IConsentLedger.Record memory r, bytes32 head) = ledger.record(stranger, recordId);
        vm.assertEq(r.author, address(0));
        vm.assertEq(head, bytes32(0));
    }

    function test_RevertWhen_AnchorCallerIsNotProvider() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, stranger));
        ledger.anchorRecord(patient, LABORATORY, "salt", CID, COMMITMENT);
    }

    /// @dev The relayer, the admin and the custodian cannot anchor: they are not providers, and a provider's
    /// record can only be anchored by the provider (its records ids are derived from its own address).
    function test_RevertWhen_AnchorCallerIsAdminOrCustodian() public {
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, admin));
        ledger.anchorRecord(patient, LABORATORY, "salt", CID, COMMITMENT);
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, custodian));
        ledger.anchorRecord(patient, LABORATORY, "salt", CID, COMMITMENT);
    }

    function test_RevertWhen_AnchorCallerIsSuspended() public {
        vm.prank(admin);
        ledger.suspendProvider(provider);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, provider));
        ledger.anchorRecord(patient, LABORATORY, "salt", CID, COMMITMENT);
    }

    function test_RevertWhen_AnchorPatientIsZero() public {
        vm.prank(provider);
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.anchorRecord(address(0), LABORATORY, "salt", CID, COMMITMENT);
    }

    function test_RevertWhen_AnchorCidIsEmpty() public {
        vm.prank(provider);
        vm.expectRevert(IConsentLedger.EmptyCid.selector);
        ledger.anchorRecord(patient, LABORATORY, "salt", "", COMMITMENT);
    }

    function test_RevertWhen_CategoryIsUnknown() public {
        bytes32 genomics = keccak256("genomics");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownCategory.selector, genomics));
        ledger.anchorRecord(patient, genomics, "salt", CID, COMMITMENT);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownCategory.selector, bytes32(0)));
        ledger.anchorRecord(patient, 0, "salt", CID, COMMITMENT);
    }

    function test_RevertWhen_RecordAlreadyExists() public {
        bytes32 recordId = _anchor(patient, "salt");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordAlreadyExists.selector, recordId));
        ledger.anchorRecord(patient, IMAGING, "salt", CID2, COMMITMENT);
    }

    // ------------------------------------------------------------ amendRecord

    function test_AmendRecord() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 v1) = ledger.record(patient, recordId);
        bytes32 commitment2 = keccak256("v2");
        bytes32 v2 = _versionHash(recordId, 2, patient, provider, LABORATORY, CID2, commitment2, v1);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordAnchored(recordId, patient, provider, 2, LABORATORY, CID2, commitment2, v1, v2);
        vm.prank(provider);
        vm.assertEq(ledger.amendRecord(patient, recordId, CID2, commitment2, v1), 2);

        (IConsentLedger.Record memory r, bytes32 head) = ledger.record(patient, recordId);
        vm.assertEq(r.version, 2);
        vm.assertEq(r.author, provider);
        vm.assertEq(r.categoryIndex, 1);
        vm.assertEq(head, v2);

        bytes32 v3 = _versionHash(recordId, 3, patient, provider, LABORATORY, CID, COMMITMENT, v2);
        vm.prank(provider);
        vm.assertEq(ledger.amendRecord(patient, recordId, CID, COMMITMENT, v2), 3);
        (, head) = ledger.record(patient, recordId);
        vm.assertEq(head, v3);
    }

    function test_RevertWhen_AmendCidIsEmpty() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.prank(provider);
        vm.expectRevert(IConsentLedger.EmptyCid.selector);
        ledger.amendRecord(patient, recordId, "", COMMITMENT, head);
    }

    function test_RevertWhen_AmendRecordIsUnknown() public {
        bytes32 recordId = ledger.recordIdOf(patient, provider, "nope");
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, patient, recordId));
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, 0);
    }

    function test_RevertWhen_AmendRecordOfAnotherPatient() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, stranger, recordId));
        ledger.amendRecord(stranger, recordId, CID, COMMITMENT, head);
    }

    function test_RevertWhen_AmendRecordIsErased() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
    }

    function test_RevertWhen_AmendCallerIsNotAuthor() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.prank(provider2);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotRecordAuthor.selector, recordId, provider2));
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
    }

    function test_RevertWhen_AmendAuthorIsSuspended() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.prank(admin);
        ledger.suspendProvider(provider);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, provider));
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
    }

    function test_RevertWhen_AmendVersionIsStale() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 v1) = ledger.record(patient, recordId);
        vm.prank(provider);
        ledger.amendRecord(patient, recordId, CID2, COMMITMENT, v1);
        (, bytes32 v2) = ledger.record(patient, recordId);
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.StaleVersion.selector, recordId, v1, v2));
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, v1);
    }

    // ------------------------------------------------------------ eraseRecord

    function test_EraseRecord() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 head) = ledger.record(patient, recordId);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, patient, patient, 1);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        (IConsentLedger.Record memory r, bytes32 headAfter) = ledger.record(patient, recordId);
        vm.assertTrue(r.erased);
        vm.assertEq(r.version, 1);
        vm.assertEq(r.author, provider);
        vm.assertEq(headAfter, head, "the hash chain is kept");
    }

    function test_EraseRecord_ByLiveDelegate() public {
        bytes32 recordId = _anchor(patient, "salt");
        _delegate(patient, delegate, 0);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, patient, delegate, 1);
        vm.prank(delegate);
        ledger.eraseRecord(patient, recordId);
    }

    /// @dev The operator's roles give no power over a patient's records.
    function test_RevertWhen_EraseCallerIsCustodianOrAdmin() public {
        bytes32 recordId = _anchor(patient, "salt");
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, custodian));
        ledger.eraseRecord(patient, recordId);
        vm.prank(admin);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, admin));
        ledger.eraseRecord(patient, recordId);
        vm.prank(admin);
        ledger.grantRole(DEFAULT_ADMIN_ROLE, stranger); // even with every role
        vm.startPrank(stranger);
        ledger.grantRole(CUSTODIAN_ROLE, stranger);
        ledger.grantRole(EMERGENCY_ROLE, stranger);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, stranger));
        ledger.eraseRecord(patient, recordId);
        vm.stopPrank();
        (IConsentLedger.Record memory r,) = ledger.record(patient, recordId);
        vm.assertFalse(r.erased);
    }

    function test_RevertWhen_EraseCallerIsNotPatient() public {
        bytes32 recordId = _anchor(patient, "salt");
        vm.prank(provider); // not even the author may erase
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, provider));
        ledger.eraseRecord(patient, recordId);
    }

    function test_RevertWhen_EraseByExpiredDelegate() public {
        bytes32 recordId = _anchor(patient, "salt");
        _delegate(patient, delegate, uint64(block.timestamp + 1));
        vm.warp(block.timestamp + 1);
        vm.prank(delegate);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotPatientOrDelegate.selector, patient, delegate));
        ledger.eraseRecord(patient, recordId);
    }

    function test_RevertWhen_EraseRecordIsUnknown() public {
        bytes32 recordId = keccak256("nope");
        vm.prank(patient);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, patient, recordId));
        ledger.eraseRecord(patient, recordId);
    }

    function test_RevertWhen_EraseRecordIsErased() public {
        bytes32 recordId = _anchor(patient, "salt");
        vm.startPrank(patient);
        ledger.eraseRecord(patient, recordId);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.eraseRecord(patient, recordId);
        vm.stopPrank();
    }

    // ------------------------------------------------------------ anchorRecordBySig

    function test_AnchorRecordBySig() public {
        bytes32 salt = "salt";
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, salt);
        a.category = IMAGING;
        bytes32 recordId = keccak256(abi.encode(patient, provider, salt));
        bytes32 vh = _versionHash(recordId, 1, patient, provider, IMAGING, CID, COMMITMENT, 0);
        bytes memory sig = _signAnchor(PROVIDER_PK, a);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordAnchored(recordId, patient, provider, 1, IMAGING, CID, COMMITMENT, 0, vh);
        vm.prank(stranger); // anyone relays
        vm.assertEq(ledger.anchorRecordBySig(a, sig), recordId);

        (IConsentLedger.Record memory r, bytes32 head) = ledger.record(patient, recordId);
        vm.assertEq(r.author, provider);
        vm.assertEq(r.version, 1);
        vm.assertEq(r.categoryIndex, 2);
        vm.assertEq(head, vh);
        vm.assertTrue(ledger.nonceUsed(provider, a.nonce));
    }

    /// @dev The same record as {anchorRecord} would make: a direct anchor with the same salt collides.
    function test_AnchorRecordBySig_SameIdAsDirect() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        bytes32 recordId = ledger.anchorRecordBySig(a, _signAnchor(PROVIDER_PK, a));
        vm.prank(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordAlreadyExists.selector, recordId));
        ledger.anchorRecord(patient, LABORATORY, "salt", CID, COMMITMENT);
    }

    /// @dev A text CID (59 bytes) is hashed as EIP-712 bytes like any other length.
    function test_AnchorRecordBySig_LongCid() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        a.cid = CID2;
        bytes32 recordId = ledger.anchorRecordBySig(a, _signAnchor(PROVIDER_PK, a));
        vm.assertEq(
            _head(patient, recordId), _versionHash(recordId, 1, patient, provider, LABORATORY, CID2, COMMITMENT, 0)
        );
    }

    function test_AnchorRecordBySig_ERC1271Provider() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        vm.prank(admin);
        ledger.onboardProvider(address(wallet), "Wallet Clinic");
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, address(wallet), "salt");
        bytes32 recordId = ledger.anchorRecordBySig(a, _signAnchor(STRANGER_PK, a));
        (IConsentLedger.Record memory r,) = ledger.record(patient, recordId);
        vm.assertEq(r.author, address(wallet));
        vm.assertTrue(ledger.nonceUsed(address(wallet), a.nonce));
    }

    function test_RevertWhen_AnchorBySigReplayed() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        bytes memory sig = _signAnchor(PROVIDER_PK, a);
        ledger.anchorRecordBySig(a, sig);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentLedger.RecordAlreadyExists.selector, ledger.recordIdOf(patient, provider, "salt")
            )
        );
        ledger.anchorRecordBySig(a, sig);
        // the nonce is what stops it where the record id would not: the same message for a fresh salt is a
        // new message, but a second message with the spent nonce is refused
        IConsentLedger.RecordAnchor memory b = _anchorMsg(patient, provider, "salt-2");
        b.nonce = a.nonce;
        bytes memory sigB = _signAnchor(PROVIDER_PK, b);
        vm.expectRevert(_nonceUsed(provider, a.nonce));
        ledger.anchorRecordBySig(b, sigB);
    }

    function test_RevertWhen_AnchorBySigExpired() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        bytes memory sig = _signAnchor(PROVIDER_PK, a);
        vm.warp(a.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, a.deadline, a.deadline + 1));
        ledger.anchorRecordBySig(a, sig);
    }

    function test_RevertWhen_AnchorBySigSignedForAnotherChain() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        bytes memory sig = _signAnchor(PROVIDER_PK, a);
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        vm.expectRevert(
            _invalidSigner(provider, _recovered(_hash(a), _domainSeparator(address(ledger), original + 1), sig))
        );
        ledger.anchorRecordBySig(a, sig);
    }

    function test_RevertWhen_AnchorBySigSignedForAnotherLedger() public {
        ConsentLedger other = new ConsentLedger(admin);
        vm.prank(admin);
        other.onboardProvider(provider, "General Hospital");
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        bytes memory sig = _signFor(PROVIDER_PK, address(other), block.chainid, _hash(a));
        other.anchorRecordBySig(a, sig);
        vm.expectRevert(_invalidSigner(provider, _recovered(_hash(a), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.anchorRecordBySig(a, sig);
    }

    /// @dev The operator (or anyone) cannot anchor in a provider's name without the provider's signature.
    function test_RevertWhen_AnchorBySigSignedByAnotherKey() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        vm.expectRevert(_invalidSigner(provider, custodian));
        ledger.anchorRecordBySig(a, _signAnchor(CUSTODIAN_PK, a));
        vm.expectRevert(_invalidSigner(provider, admin));
        ledger.anchorRecordBySig(a, _signAnchor(ADMIN_PK, a));
        vm.expectRevert(_invalidSigner(provider, provider2));
        ledger.anchorRecordBySig(a, _signAnchor(PROVIDER2_PK, a));
    }

    function test_RevertWhen_AnchorBySigMessageTampered() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, provider, "salt");
        bytes memory sig = _signAnchor(PROVIDER_PK, a);
        a.cid = CID2; // the relayer swaps the document
        vm.expectRevert(_invalidSigner(provider, _recovered(_hash(a), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.anchorRecordBySig(a, sig);
    }

    function test_RevertWhen_AnchorBySigAuthorIsNotProvider() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(patient, custodian, "salt");
        bytes memory sig = _signAnchor(CUSTODIAN_PK, a);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, custodian));
        ledger.anchorRecordBySig(a, sig);
        vm.prank(admin);
        ledger.suspendProvider(provider);
        a = _anchorMsg(patient, provider, "salt");
        sig = _signAnchor(PROVIDER_PK, a);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, provider));
        ledger.anchorRecordBySig(a, sig);
    }

    function test_RevertWhen_AnchorBySigIsInvalid() public {
        IConsentLedger.RecordAnchor memory a = _anchorMsg(address(0), provider, "salt");
        vm.expectRevert(IConsentLedger.ZeroAddress.selector);
        ledger.anchorRecordBySig(a, _signAnchor(PROVIDER_PK, a));
        a = _anchorMsg(patient, provider, "salt");
        a.cid = "";
        vm.expectRevert(IConsentLedger.EmptyCid.selector);
        ledger.anchorRecordBySig(a, _signAnchor(PROVIDER_PK, a));
        a = _anchorMsg(patient, provider, "salt");
        a.category = keccak256("genomics");
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownCategory.selector, a.category));
        ledger.anchorRecordBySig(a, _signAnchor(PROVIDER_PK, a));
    }

    // ------------------------------------------------------------ amendRecordBySig

    function test_AmendRecordBySig() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        a.cid = CID2;
        bytes32 v1 = a.previousHash;
        bytes32 v2 = _versionHash(recordId, 2, patient, provider, LABORATORY, CID2, a.commitment, v1);
        bytes memory sig = _signAmend(PROVIDER_PK, a);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordAnchored(recordId, patient, provider, 2, LABORATORY, CID2, a.commitment, v1, v2);
        vm.prank(stranger);
        vm.assertEq(ledger.amendRecordBySig(a, sig), 2);
        (IConsentLedger.Record memory r, bytes32 head) = ledger.record(patient, recordId);
        vm.assertEq(r.version, 2);
        vm.assertEq(r.categoryIndex, 1);
        vm.assertEq(head, v2);
        vm.assertTrue(ledger.nonceUsed(provider, a.nonce));
        // and it chains on: a direct amendment after it
        vm.prank(provider);
        vm.assertEq(ledger.amendRecord(patient, recordId, CID, COMMITMENT, v2), 3);
    }

    function test_AmendRecordBySig_ERC1271Provider() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        vm.prank(admin);
        ledger.onboardProvider(address(wallet), "Wallet Clinic");
        IConsentLedger.RecordAnchor memory an = _anchorMsg(patient, address(wallet), "salt");
        bytes32 recordId = ledger.anchorRecordBySig(an, _signAnchor(STRANGER_PK, an));
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, address(wallet), recordId);
        vm.assertEq(ledger.amendRecordBySig(a, _signAmend(STRANGER_PK, a)), 2);
    }

    function test_RevertWhen_AmendBySigReplayed() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        bytes memory sig = _signAmend(PROVIDER_PK, a);
        ledger.amendRecordBySig(a, sig);
        // the chain moved on, so the replay fails on the stale head first; with the nonce spent it could not
        // pass even against the head it names
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentLedger.StaleVersion.selector, recordId, a.previousHash, _head(patient, recordId)
            )
        );
        ledger.amendRecordBySig(a, sig);
        IConsentLedger.RecordAmend memory b = _amendMsg(patient, provider, recordId);
        b.nonce = a.nonce;
        bytes memory sigB = _signAmend(PROVIDER_PK, b);
        vm.expectRevert(_nonceUsed(provider, a.nonce));
        ledger.amendRecordBySig(b, sigB);
    }

    function test_RevertWhen_AmendBySigExpired() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        bytes memory sig = _signAmend(PROVIDER_PK, a);
        vm.warp(a.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, a.deadline, a.deadline + 1));
        ledger.amendRecordBySig(a, sig);
    }

    function test_RevertWhen_AmendBySigSignedForAnotherChainOrLedger() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        bytes memory sig = _signFor(PROVIDER_PK, address(ledger), block.chainid + 1, _hash(a));
        vm.expectRevert(_invalidSigner(provider, _recovered(_hash(a), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.amendRecordBySig(a, sig);
        sig = _signFor(PROVIDER_PK, address(0xBEEF), block.chainid, _hash(a));
        vm.expectRevert(_invalidSigner(provider, _recovered(_hash(a), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.amendRecordBySig(a, sig);
    }

    function test_RevertWhen_AmendBySigSignedByAnotherKey() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        vm.expectRevert(_invalidSigner(provider, custodian));
        ledger.amendRecordBySig(a, _signAmend(CUSTODIAN_PK, a));
        vm.expectRevert(_invalidSigner(provider, patient));
        ledger.amendRecordBySig(a, _signAmend(PATIENT_PK, a));
    }

    function test_RevertWhen_AmendBySigAuthorIsNotRecordAuthor() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider2, recordId);
        bytes memory sig = _signAmend(PROVIDER2_PK, a);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotRecordAuthor.selector, recordId, provider2));
        ledger.amendRecordBySig(a, sig);
    }

    function test_RevertWhen_AmendBySigAuthorIsSuspended() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        bytes memory sig = _signAmend(PROVIDER_PK, a);
        vm.prank(admin);
        ledger.suspendProvider(provider);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotActiveProvider.selector, provider));
        ledger.amendRecordBySig(a, sig);
    }

    function test_RevertWhen_AmendBySigIsStale() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        IConsentLedger.RecordAmend memory b = _amendMsg(patient, provider, recordId); // same head, racing
        b.commitment = keccak256("other next version");
        ledger.amendRecordBySig(a, _signAmend(PROVIDER_PK, a));
        bytes memory sig = _signAmend(PROVIDER_PK, b);
        vm.expectRevert(
            abi.encodeWithSelector(
                IConsentLedger.StaleVersion.selector, recordId, b.previousHash, _head(patient, recordId)
            )
        );
        ledger.amendRecordBySig(b, sig);
    }

    function test_RevertWhen_AmendBySigRecordIsErasedOrUnknown() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        bytes memory sig = _signAmend(PROVIDER_PK, a);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.amendRecordBySig(a, sig);
        a = _amendMsg(stranger, provider, recordId);
        sig = _signAmend(PROVIDER_PK, a);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, stranger, recordId));
        ledger.amendRecordBySig(a, sig);
    }

    function test_RevertWhen_AmendBySigCidIsEmpty() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordAmend memory a = _amendMsg(patient, provider, recordId);
        a.cid = "";
        bytes memory sig = _signAmend(PROVIDER_PK, a);
        vm.expectRevert(IConsentLedger.EmptyCid.selector);
        ledger.amendRecordBySig(a, sig);
    }

    // ------------------------------------------------------------ eraseRecordBySig

    function test_EraseRecordBySig() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 v1) = ledger.record(patient, recordId);
        vm.prank(provider);
        ledger.amendRecord(patient, recordId, CID2, COMMITMENT, v1);
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        bytes memory sig = _signErase(PATIENT_PK, e);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, patient, patient, 2);
        vm.prank(stranger);
        ledger.eraseRecordBySig(e, sig);
        (IConsentLedger.Record memory r,) = ledger.record(patient, recordId);
        vm.assertTrue(r.erased);
        vm.assertEq(r.version, 2);
        vm.assertTrue(ledger.nonceUsed(patient, e.nonce));
    }

    function test_EraseRecordBySig_LiveDelegate() public {
        bytes32 recordId = _anchor(patient, "salt");
        _delegate(patient, delegate, 0);
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, patient, delegate, 1);
        ledger.eraseRecordBySig(e, _signErase(DELEGATE_PK, e));
        vm.assertTrue(ledger.nonceUsed(delegate, e.nonce));
        vm.assertFalse(ledger.nonceUsed(patient, e.nonce));
    }

    function test_EraseRecordBySig_ERC1271Wallet() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        bytes32 recordId = _anchor(address(wallet), "salt");
        IConsentLedger.RecordErase memory e = _eraseMsg(address(wallet), recordId);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, address(wallet), address(wallet), 1);
        ledger.eraseRecordBySig(e, _signErase(STRANGER_PK, e));
    }

    function test_RevertWhen_EraseBySigReplayed() public {
        bytes32 recordId = _anchor(patient, "salt");
        bytes32 other = _anchor(patient, "other");
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        bytes memory sig = _signErase(PATIENT_PK, e);
        ledger.eraseRecordBySig(e, sig);
        IConsentLedger.RecordErase memory e2 = _eraseMsg(patient, other);
        e2.nonce = e.nonce;
        bytes memory sig2 = _signErase(PATIENT_PK, e2);
        vm.expectRevert(_nonceUsed(patient, e.nonce));
        ledger.eraseRecordBySig(e2, sig2);
    }

    function test_RevertWhen_EraseBySigExpired() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        bytes memory sig = _signErase(PATIENT_PK, e);
        vm.warp(e.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, e.deadline, e.deadline + 1));
        ledger.eraseRecordBySig(e, sig);
    }

    function test_RevertWhen_EraseBySigSignedForAnotherChain() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        bytes memory sig = _signErase(PATIENT_PK, e);
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        vm.expectRevert(
            _invalidSigner(patient, _recovered(_hash(e), _domainSeparator(address(ledger), original + 1), sig))
        );
        ledger.eraseRecordBySig(e, sig);
    }

    function test_RevertWhen_EraseBySigSignedForAnotherLedger() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        bytes memory sig = _signFor(PATIENT_PK, address(0xBEEF), block.chainid, _hash(e));
        vm.expectRevert(_invalidSigner(patient, _recovered(_hash(e), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.eraseRecordBySig(e, sig);
    }

    /// @dev Neither the custodian, the admin, the author nor an expired delegate can sign an erasure.
    function test_RevertWhen_EraseBySigSignedByAnotherKey() public {
        bytes32 recordId = _anchor(patient, "salt");
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        vm.expectRevert(_invalidSigner(patient, custodian));
        ledger.eraseRecordBySig(e, _signErase(CUSTODIAN_PK, e));
        vm.expectRevert(_invalidSigner(patient, admin));
        ledger.eraseRecordBySig(e, _signErase(ADMIN_PK, e));
        vm.expectRevert(_invalidSigner(patient, provider));
        ledger.eraseRecordBySig(e, _signErase(PROVIDER_PK, e));
        _delegate(patient, delegate, uint64(block.timestamp + 1));
        vm.warp(block.timestamp + 1);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.eraseRecordBySig(e, _signErase(DELEGATE_PK, e));
    }

    function test_RevertWhen_EraseBySigRecordIsErasedOrUnknown() public {
        bytes32 recordId = _anchor(patient, "salt");
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        IConsentLedger.RecordErase memory e = _eraseMsg(patient, recordId);
        bytes memory sig = _signErase(PATIENT_PK, e);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.eraseRecordBySig(e, sig);
        e = _eraseMsg(patient, keccak256("nope"));
        sig = _signErase(PATIENT_PK, e);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, patient, e.recordId));
        ledger.eraseRecordBySig(e, sig);
    }
}
