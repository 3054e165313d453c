// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {ERC1271WalletMock} from "./mocks/ERC1271WalletMock.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev Authorization (isAuthorized/authorizingConsent), signed access and emergency requests, disclosure
/// batches (the custodian's only act).
contract ConsentLedgerDisclosureTest is LedgerFixture {
    bytes32 internal recordId; // a laboratory record of `patient` by `provider`

    function setUp() public override {
        super.setUp();
        recordId = _anchor(patient, "salt");
        vm.startPrank(admin);
        ledger.grantRole(EMERGENCY_ROLE, provider2);
        vm.stopPrank();
    }

    function _assertAuthorized(bytes32 expected) internal view {
        vm.assertEq(ledger.authorizingConsent(patient, provider2, recordId, TREAT), expected);
        vm.assertEq(ledger.isAuthorized(patient, provider2, recordId, TREAT), expected != 0);
    }

    // ------------------------------------------------------------ isAuthorized / authorizingConsent

    function test_IsAuthorized_NoConsent() public view {
        _assertAuthorized(0);
    }

    function test_IsAuthorized_RecordScope() public {
        _assertAuthorized(0);
        _assertAuthorized(_grant(patient, provider2, recordId, TREAT));
    }

    function test_IsAuthorized_CategoryScope() public {
        _assertAuthorized(_grant(patient, provider2, LABORATORY, TREAT));
    }

    function test_IsAuthorized_AllRecordsScope() public {
        _assertAuthorized(_grant(patient, provider2, 0, TREAT));
    }

    function test_IsAuthorized_ScopeOrder() public {
        bytes32 all = _grant(patient, provider2, 0, TREAT);
        bytes32 category = _grant(patient, provider2, LABORATORY, TREAT);
        bytes32 rec = _grant(patient, provider2, recordId, TREAT);
        _assertAuthorized(rec);
        vm.startPrank(patient);
        ledger.revokeConsent(rec);
        _assertAuthorized(category);
        ledger.revokeConsent(category);
        _assertAuthorized(all);
        ledger.revokeConsent(all);
        _assertAuthorized(0);
        vm.stopPrank();
    }

    function test_IsAuthorized_OtherScopesDoNotMatch() public {
        _grant(patient, provider2, IMAGING, TREAT);
        _grant(patient, provider2, _anchor(patient, "other"), TREAT);
        _grant(patient, provider2, bytes32(uint256(1)), TREAT);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_OtherPurposeDoesNotMatch() public {
        _grant(patient, provider2, 0, HPAYMT);
        _assertAuthorized(0);
        vm.assertTrue(ledger.isAuthorized(patient, provider2, recordId, HPAYMT));
    }

    function test_IsAuthorized_OtherGranteeDoesNotMatch() public {
        _grant(patient, provider, 0, TREAT);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_OtherPatientsConsentDoesNotMatch() public {
        _grant(stranger, provider2, 0, TREAT);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_ValidityWindow() public {
        uint64 from = uint64(block.timestamp + 100);
        uint64 until = from + 50;
        vm.prank(patient);
        bytes32 id = ledger.grantConsent(patient, provider2, 0, TREAT, from, until);
        vm.warp(from - 1);
        _assertAuthorized(0);
        vm.warp(from); // inclusive
        _assertAuthorized(id);
        vm.warp(until - 1);
        _assertAuthorized(id);
        vm.warp(until); // exclusive
        _assertAuthorized(0);
    }

    function test_IsAuthorized_RevokedConsent() public {
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.revokeConsent(id);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_SuspendedGrantee() public {
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        vm.prank(admin);
        ledger.suspendProvider(provider2);
        _assertAuthorized(0);
        vm.prank(admin);
        ledger.reinstateProvider(provider2);
        _assertAuthorized(id);
    }

    function test_IsAuthorized_GranteeWithoutProviderRole() public {
        _grant(patient, stranger, 0, TREAT);
        vm.assertFalse(ledger.isAuthorized(patient, stranger, recordId, TREAT));
        vm.prank(admin);
        ledger.onboardProvider(stranger, "Late Clinic");
        vm.assertTrue(ledger.isAuthorized(patient, stranger, recordId, TREAT));
    }

    function test_IsAuthorized_ErasedRecord() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        _assertAuthorized(0);
    }

    function test_IsAuthorized_UnknownRecord() public {
        _grant(patient, provider2, 0, TREAT);
        vm.assertFalse(ledger.isAuthorized(patient, provider2, keccak256("nope"), TREAT));
        vm.assertFalse(ledger.isAuthorized(stranger, provider2, recordId, TREAT));
    }

    function test_IsAuthorized_NeverForEmergencyPurpose() public view {
        vm.assertFalse(ledger.isAuthorized(patient, provider2, recordId, ETREAT));
        vm.assertEq(ledger.authorizingConsent(patient, provider2, recordId, ETREAT), 0);
    }

    // ------------------------------------------------------------ logAccessBySig

    /// @dev Signs `q` as provider2 (the accessor of every request below unless said otherwise).
    function _logAccess(IConsentLedger.AccessRequest memory q) internal returns (bytes32) {
        return ledger.logAccessBySig(q, _signAccess(PROVIDER2_PK, q));
    }

    function _accessDenied(bytes32 purpose) internal view returns (bytes memory) {
        return
            abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, provider2, purpose);
    }

    function test_LogAccessBySig() public {
        bytes32 id = _grant(patient, provider2, LABORATORY, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        bytes32 digest = _digest(_hash(q));
        vm.assertEq(ledger.accessRequestDigest(q), digest);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, provider2, 1, TREAT, id, digest);
        vm.prank(stranger); // anyone relays
        vm.assertEq(ledger.logAccessBySig(q, sig), id);
        vm.assertTrue(ledger.nonceUsed(provider2, q.nonce));
    }

    function test_LogAccessBySig_OlderVersion() public {
        bytes32 id = _grant(patient, provider2, recordId, HOPERAT);
        _amendAsProvider(recordId);
        _amendAsProvider(recordId);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 2, HOPERAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, provider2, 2, HOPERAT, id, _digest(_hash(q)));
        _logAccess(q);
        q = _accessMsg(patient, provider2, recordId, 3, HOPERAT); // the head
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, provider2, 3, HOPERAT, id, _digest(_hash(q)));
        _logAccess(q);
    }

    function test_RevertWhen_LogAccessVersionIsZero() public {
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 0, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, 0));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessVersionIsAfterHead() public {
        _grant(patient, provider2, 0, TREAT);
        _amendAsProvider(recordId);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 3, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, 3));
        ledger.logAccessBySig(q, sig);
        q = _accessMsg(patient, provider2, recordId, type(uint32).max, TREAT);
        sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, type(uint32).max));
        ledger.logAccessBySig(q, sig);
    }

    function test_LogAccessBySig_ERC1271Accessor() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        vm.prank(admin);
        ledger.onboardProvider(address(wallet), "Wallet Clinic");
        bytes32 id = _grant(patient, address(wallet), 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, address(wallet), recordId, 1, TREAT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, address(wallet), 1, TREAT, id, _digest(_hash(q)));
        ledger.logAccessBySig(q, _sign(STRANGER_PK, _digest(_hash(q))));
        vm.assertTrue(ledger.nonceUsed(address(wallet), q.nonce));
    }

    function test_RevertWhen_LogAccessReplayed() public {
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        ledger.logAccessBySig(q, sig);
        vm.expectRevert(_nonceUsed(provider2, q.nonce));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessExpired() public {
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.warp(q.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, q.deadline, q.deadline + 1));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessSignedForAnotherChain() public {
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        vm.assertNotEq(ledger.accessRequestDigest(q), _digestFor(address(ledger), original, _hash(q)));
        vm.expectRevert(
            _invalidSigner(provider2, _recovered(_hash(q), _domainSeparator(address(ledger), original + 1), sig))
        );
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessSignedForAnotherLedger() public {
        ConsentLedger other = new ConsentLedger(admin);
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signFor(PROVIDER2_PK, address(other), block.chainid, _hash(q));
        vm.expectRevert(_invalidSigner(provider2, _recovered(_hash(q), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.logAccessBySig(q, sig);
    }

    /// @dev The custodian, the admin, the patient or another provider cannot log an access in the accessor's
    /// name: only the accessor's signature does.
    function test_RevertWhen_LogAccessSignedByAnotherKey() public {
        _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        vm.expectRevert(_invalidSigner(provider2, custodian));
        ledger.logAccessBySig(q, _signAccess(CUSTODIAN_PK, q));
        vm.expectRevert(_invalidSigner(provider2, admin));
        ledger.logAccessBySig(q, _signAccess(ADMIN_PK, q));
        vm.expectRevert(_invalidSigner(provider2, patient));
        ledger.logAccessBySig(q, _signAccess(PATIENT_PK, q));
        vm.expectRevert(_invalidSigner(provider2, provider));
        ledger.logAccessBySig(q, _signAccess(PROVIDER_PK, q));
    }

    function test_RevertWhen_LogAccessMessageTampered() public {
        _grant(patient, provider2, 0, TREAT);
        _grant(patient, provider2, 0, HPAYMT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        q.purpose = HPAYMT; // the relayer logs another purpose than the one requested
        vm.expectRevert(_invalidSigner(provider2, _recovered(_hash(q), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.logAccessBySig(q, sig);
    }

    /// @dev v1's custodian-role logging is gone: no selector logs an access without the accessor's signature.
    function test_RevertWhen_CustodianCallsRemovedLogFunctions() public {
        _grant(patient, provider2, 0, TREAT);
        vm.startPrank(custodian);
        (bool ok, bytes memory ret) = address(ledger)
            .call(
                abi.encodeWithSignature(
                    "logAccess(address,bytes32,address,bytes32)", patient, recordId, provider2, TREAT
                )
            );
        vm.assertFalse(ok);
        vm.assertEq(ret.length, 0, "no such function");
        (ok, ret) = address(ledger)
            .call(
                abi.encodeWithSignature(
                    "logEmergencyAccess(address,bytes32,address,bytes32)", patient, recordId, provider2, REASON
                )
            );
        vm.assertFalse(ok);
        vm.assertEq(ret.length, 0, "no such function");
        vm.stopPrank();
    }

    function test_RevertWhen_LogAccessRecordIsUnknown() public {
        bytes32 unknown = keccak256("nope");
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, unknown, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, patient, unknown));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessRecordIsErased() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessWithoutConsent() public {
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(_accessDenied(TREAT));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessConsentRevoked() public {
        bytes32 id = _grant(patient, provider2, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q); // signed while authorized
        vm.prank(patient);
        ledger.revokeConsent(id);
        vm.expectRevert(_accessDenied(TREAT));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessConsentExpired() public {
        vm.prank(patient);
        ledger.grantConsent(patient, provider2, 0, TREAT, 0, uint64(block.timestamp + 1));
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.warp(block.timestamp + 1);
        vm.expectRevert(_accessDenied(TREAT));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessAccessorIsSuspended() public {
        _grant(patient, provider2, 0, TREAT);
        vm.prank(admin);
        ledger.suspendProvider(provider2);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(_accessDenied(TREAT));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessPurposeIsEmergency() public {
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, ETREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(_accessDenied(ETREAT));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_LogAccessConsentIsForAnotherGrantee() public {
        // the patient consented to provider; provider2 cannot log under it, even signing as itself
        _grant(patient, provider, 0, TREAT);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, provider2, recordId, 1, TREAT);
        bytes memory sig = _signAccess(PROVIDER2_PK, q);
        vm.expectRevert(_accessDenied(TREAT));
        ledger.logAccessBySig(q, sig);
    }

    // ------------------------------------------------------------ the patient's own request (PATRQT)

    /// @dev A request of `patient_` for version 1 of its own record: the patient is the accessor.
    function _ownRequest(address patient_, bytes32 recordId_, bytes32 purpose)
        internal
        returns (IConsentLedger.AccessRequest memory)
    {
        return _accessMsg(patient_, patient_, recordId_, 1, purpose);
    }

    function _notAuthorized(address accessor, bytes32 purpose) internal view returns (bytes memory) {
        return abi.encodeWithSelector(IConsentLedger.AccessNotAuthorized.selector, patient, recordId, accessor, purpose);
    }

    /// @dev Right of access: the patient reads its own record without any consent; the disclosure is logged like
    /// any other, with consent 0 and the request's digest, and spends the patient's nonce.
    function test_LogAccessBySig_PatientOwnRequest() public {
        vm.assertFalse(ledger.isActiveProvider(patient));
        vm.assertEq(ledger.authorizingConsent(patient, patient, recordId, PATRQT), 0, "no consent is involved");
        IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, PATRQT);
        bytes memory sig = _signAccess(PATIENT_PK, q);
        bytes32 digest = _digest(_hash(q));
        vm.assertEq(ledger.accessRequestDigest(q), digest);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, patient, 1, PATRQT, bytes32(0), digest);
        vm.prank(stranger); // anyone relays
        vm.assertEq(ledger.logAccessBySig(q, sig), bytes32(0));
        vm.assertTrue(ledger.nonceUsed(patient, q.nonce));
    }

    function test_LogAccessBySig_PatientOwnRequestOlderVersion() public {
        _amendAsProvider(recordId);
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, patient, recordId, 1, PATRQT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, patient, 1, PATRQT, bytes32(0), _digest(_hash(q)));
        ledger.logAccessBySig(q, _signAccess(PATIENT_PK, q));
        q = _accessMsg(patient, patient, recordId, 3, PATRQT); // after the head
        bytes memory sig = _signAccess(PATIENT_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, 3));
        ledger.logAccessBySig(q, sig);
    }

    /// @dev Only PATRQT needs no consent: the patient's own request for any other purpose is refused as before.
    function test_RevertWhen_PatientOwnRequestHasAnotherPurpose() public {
        bytes32[7] memory others = [TREAT, HPAYMT, HOPERAT, HRESCH, PUBHLTH, ETREAT, bytes32("PATRQT2")];
        for (uint256 i; i < others.length; ++i) {
            IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, others[i]);
            bytes memory sig = _signAccess(PATIENT_PK, q);
            vm.expectRevert(_notAuthorized(patient, others[i]));
            ledger.logAccessBySig(q, sig);
            vm.assertFalse(ledger.nonceUsed(patient, q.nonce));
        }
    }

    /// @dev PATRQT is no key for anyone else: a provider (even the record's author), a stranger or another patient
    /// naming themselves as accessor needs a consent; with one, the consent is what is logged.
    function test_RevertWhen_PatrqtByAnotherAccessorWithoutConsent() public {
        address[3] memory accessors = [provider2, provider, stranger];
        uint256[3] memory keys = [PROVIDER2_PK, PROVIDER_PK, STRANGER_PK];
        for (uint256 i; i < accessors.length; ++i) {
            IConsentLedger.AccessRequest memory q = _accessMsg(patient, accessors[i], recordId, 1, PATRQT);
            bytes memory sig = _signAccess(keys[i], q);
            vm.expectRevert(_notAuthorized(accessors[i], PATRQT));
            ledger.logAccessBySig(q, sig);
        }
        bytes32 id = _grant(patient, provider2, 0, PATRQT);
        IConsentLedger.AccessRequest memory granted = _accessMsg(patient, provider2, recordId, 1, PATRQT);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(recordId, patient, provider2, 1, PATRQT, id, _digest(_hash(granted)));
        vm.assertEq(_logAccess(granted), id);
    }

    /// @dev A live delegate cannot read for the patient through the patient's right of access: its signature of the
    /// patient's own request is not the patient's, and as its own accessor it needs a consent. Neither the
    /// patient's nor the delegate's nonce is spent.
    function test_RevertWhen_DelegateSignsThePatientsOwnRequest() public {
        _delegate(patient, delegate, 0);
        vm.assertTrue(ledger.isLiveDelegate(patient, delegate));
        IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, PATRQT);
        vm.expectRevert(_invalidSigner(patient, delegate));
        ledger.logAccessBySig(q, _signAccess(DELEGATE_PK, q));
        IConsentLedger.AccessRequest memory own = _accessMsg(patient, delegate, recordId, 1, PATRQT);
        bytes memory sig = _signAccess(DELEGATE_PK, own);
        vm.expectRevert(_notAuthorized(delegate, PATRQT));
        ledger.logAccessBySig(own, sig);
        vm.assertFalse(ledger.nonceUsed(patient, q.nonce));
        vm.assertFalse(ledger.nonceUsed(delegate, own.nonce));
    }

    /// @dev The relayer, the admin or the record's author cannot sign the patient's own request either.
    function test_RevertWhen_PatientOwnRequestSignedByAnotherKey() public {
        IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, PATRQT);
        vm.expectRevert(_invalidSigner(patient, custodian));
        ledger.logAccessBySig(q, _signAccess(CUSTODIAN_PK, q));
        vm.expectRevert(_invalidSigner(patient, admin));
        ledger.logAccessBySig(q, _signAccess(ADMIN_PK, q));
        vm.expectRevert(_invalidSigner(patient, provider));
        ledger.logAccessBySig(q, _signAccess(PROVIDER_PK, q));
    }

    /// @dev A patient reads only its own records: another patient's PATRQT request names itself as accessor (no
    /// consent), or names itself as patient of a record it does not have.
    function test_RevertWhen_PatrqtForAnotherPatientsRecord() public {
        IConsentLedger.AccessRequest memory q = _accessMsg(patient, stranger, recordId, 1, PATRQT);
        bytes memory sig = _signAccess(STRANGER_PK, q);
        vm.expectRevert(_notAuthorized(stranger, PATRQT));
        ledger.logAccessBySig(q, sig);
        q = _ownRequest(stranger, recordId, PATRQT);
        sig = _signAccess(STRANGER_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, stranger, recordId));
        ledger.logAccessBySig(q, sig);
    }

    /// @dev A contract patient reads its own record by an ERC-1271 signature, as it signs everything else; a
    /// signature the wallet does not accept is refused.
    function test_LogAccessBySig_ERC1271PatientOwnRequest() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        bytes32 walletRecord = _anchor(address(wallet), "wallet salt");
        IConsentLedger.AccessRequest memory q = _ownRequest(address(wallet), walletRecord, PATRQT);
        bytes memory sig = _sign(STRANGER_PK, _digest(_hash(q)));
        wallet.setRejectAll(true);
        vm.expectRevert(_invalidSigner(address(wallet), stranger));
        ledger.logAccessBySig(q, sig);
        wallet.setRejectAll(false);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.AccessLogged(
            walletRecord, address(wallet), address(wallet), 1, PATRQT, bytes32(0), _digest(_hash(q))
        );
        vm.assertEq(ledger.logAccessBySig(q, sig), bytes32(0));
        vm.assertTrue(ledger.nonceUsed(address(wallet), q.nonce));
    }

    function test_RevertWhen_PatientOwnRequestRecordIsErased() public {
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, PATRQT);
        bytes memory sig = _signAccess(PATIENT_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_PatientOwnRequestReplayed() public {
        IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, PATRQT);
        bytes memory sig = _signAccess(PATIENT_PK, q);
        ledger.logAccessBySig(q, sig);
        vm.expectRevert(_nonceUsed(patient, q.nonce));
        ledger.logAccessBySig(q, sig);
        // the nonce cancelled before the request is relayed: refused too
        q = _ownRequest(patient, recordId, PATRQT);
        sig = _signAccess(PATIENT_PK, q);
        vm.prank(patient);
        ledger.invalidateNonce(q.nonce);
        vm.expectRevert(_nonceUsed(patient, q.nonce));
        ledger.logAccessBySig(q, sig);
    }

    function test_RevertWhen_PatientOwnRequestExpired() public {
        IConsentLedger.AccessRequest memory q = _ownRequest(patient, recordId, PATRQT);
        bytes memory sig = _signAccess(PATIENT_PK, q);
        vm.warp(q.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, q.deadline, q.deadline + 1));
        ledger.logAccessBySig(q, sig);
    }

    // ------------------------------------------------------------ logEmergencyAccessBySig

    function _logEmergency(IConsentLedger.EmergencyAccessRequest memory q) internal {
        ledger.logEmergencyAccessBySig(q, _signEmergency(PROVIDER2_PK, q));
    }

    function test_LogEmergencyAccessBySig() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.EmergencyAccessLogged(recordId, patient, provider2, 1, REASON, _digest(_hash(q)));
        vm.prank(stranger);
        ledger.logEmergencyAccessBySig(q, sig);
        vm.assertTrue(ledger.nonceUsed(provider2, q.nonce));
    }

    function test_LogEmergencyAccessBySig_OlderVersion() public {
        _amendAsProvider(recordId);
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.EmergencyAccessLogged(recordId, patient, provider2, 1, REASON, _digest(_hash(q)));
        _logEmergency(q);
    }

    function test_LogEmergencyAccessBySig_ERC1271Accessor() public {
        ERC1271WalletMock wallet = new ERC1271WalletMock(stranger);
        vm.startPrank(admin);
        ledger.onboardProvider(address(wallet), "Wallet Clinic");
        ledger.grantRole(EMERGENCY_ROLE, address(wallet));
        vm.stopPrank();
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, address(wallet), recordId, 1);
        ledger.logEmergencyAccessBySig(q, _sign(STRANGER_PK, _digest(_hash(q))));
        vm.assertTrue(ledger.nonceUsed(address(wallet), q.nonce));
    }

    function test_RevertWhen_EmergencyVersionIsOutOfRange() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 0);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, 0));
        ledger.logEmergencyAccessBySig(q, sig);
        q = _emergencyMsg(patient, provider2, recordId, 2);
        sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownVersion.selector, recordId, 2));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencyReplayed() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        ledger.logEmergencyAccessBySig(q, sig);
        vm.expectRevert(_nonceUsed(provider2, q.nonce));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencyExpired() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.warp(q.deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.SignatureExpired.selector, q.deadline, q.deadline + 1));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencySignedForAnotherChain() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        uint256 original = block.chainid;
        vm.chainId(original + 1);
        vm.expectRevert(
            _invalidSigner(provider2, _recovered(_hash(q), _domainSeparator(address(ledger), original + 1), sig))
        );
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencySignedForAnotherLedger() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signFor(PROVIDER2_PK, address(0xBEEF), block.chainid, _hash(q));
        vm.expectRevert(_invalidSigner(provider2, _recovered(_hash(q), ledger.DOMAIN_SEPARATOR(), sig)));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencySignedByAnotherKey() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        vm.expectRevert(_invalidSigner(provider2, custodian));
        ledger.logEmergencyAccessBySig(q, _signEmergency(CUSTODIAN_PK, q));
        vm.expectRevert(_invalidSigner(provider2, admin));
        ledger.logEmergencyAccessBySig(q, _signEmergency(ADMIN_PK, q));
    }

    function test_RevertWhen_EmergencyRecordIsUnknown() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(stranger, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.UnknownRecord.selector, stranger, recordId));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencyRecordIsErased() public {
        vm.prank(patient);
        ledger.eraseRecord(patient, recordId);
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.RecordIsErased.selector, recordId));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_ReasonIsEmpty() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        q.reasonHash = 0;
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(IConsentLedger.EmptyReason.selector);
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_AccessorHasNoEmergencyRole() public {
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, provider));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencyRoleRevoked() public {
        vm.prank(admin);
        ledger.revokeRole(EMERGENCY_ROLE, provider2);
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, provider2));
        ledger.logEmergencyAccessBySig(q, sig);
        vm.prank(admin);
        ledger.grantRole(EMERGENCY_ROLE, provider2);
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencyAccessorIsSuspended() public {
        vm.prank(admin);
        ledger.suspendProvider(provider2);
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, provider2, recordId, 1);
        bytes memory sig = _signEmergency(PROVIDER2_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, provider2));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    function test_RevertWhen_EmergencyAccessorIsNotProvider() public {
        vm.prank(admin);
        ledger.grantRole(EMERGENCY_ROLE, stranger);
        IConsentLedger.EmergencyAccessRequest memory q = _emergencyMsg(patient, stranger, recordId, 1);
        bytes memory sig = _signEmergency(STRANGER_PK, q);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.NotEmergencyProvider.selector, stranger));
        ledger.logEmergencyAccessBySig(q, sig);
    }

    // ------------------------------------------------------------ anchorDisclosureBatch

    function test_AnchorDisclosureBatch() public {
        bytes32 root1 = keccak256("root1");
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DisclosureBatchAnchored(root1, 0, 10);
        vm.prank(custodian);
        ledger.anchorDisclosureBatch(root1, 0, 10);
        (bytes32 root, uint64 size) = ledger.disclosureBatchHead();
        vm.assertEq(root, root1);
        vm.assertEq(size, 10);

        bytes32 root2 = keccak256("root2");
        vm.expectEmit(true, true, true, true, address(ledger));
        emit IConsentLedger.DisclosureBatchAnchored(root2, 10, 11);
        vm.prank(custodian);
        ledger.anchorDisclosureBatch(root2, 10, 11);
        (root, size) = ledger.disclosureBatchHead();
        vm.assertEq(root, root2);
        vm.assertEq(size, 11);
    }

    function test_RevertWhen_BatchDoesNotStartAtSize() public {
        vm.startPrank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 0, 1, 5));
        ledger.anchorDisclosureBatch(keccak256("r"), 1, 5);
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 5);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 5, 4, 9));
        ledger.anchorDisclosureBatch(keccak256("r"), 4, 9);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 5, 0, 9));
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 9);
        vm.stopPrank();
    }

    function test_RevertWhen_BatchIsEmpty() public {
        vm.prank(custodian);
        vm.expectRevert(abi.encodeWithSelector(IConsentLedger.InvalidBatch.selector, 0, 0, 0));
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 0);
    }

    function test_RevertWhen_BatchRootIsZero() public {
        vm.prank(custodian);
        vm.expectRevert(IConsentLedger.EmptyBatchRoot.selector);
        ledger.anchorDisclosureBatch(0, 0, 1);
    }

    function test_RevertWhen_BatchCallerIsNotCustodian() public {
        vm.prank(admin);
        vm.expectRevert(
            abi.encodeWithSelector(IAccessControl.AccessControlUnauthorizedAccount.selector, admin, CUSTODIAN_ROLE)
        );
        ledger.anchorDisclosureBatch(keccak256("r"), 0, 1);
    }
}
