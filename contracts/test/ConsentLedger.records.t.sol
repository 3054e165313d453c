// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Record anchoring, amendment (hash chain) and erasure.
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

    function test_EraseRecord_ByCustodian() public {
        bytes32 recordId = _anchor(patient, "salt");
        (, bytes32 v1) = ledger.record(patient, recordId);
        vm.prank(provider);
        ledger.amendRecord(patient, recordId, CID2, COMMITMENT, v1);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.RecordErased(recordId, patient, custodian, 2);
        vm.prank(custodian);
        ledger.eraseRecord(patient, recordId);
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
}
