// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../src/ConsentLedger.sol";
import {IConsentLedger} from "../src/IConsentLedger.sol";
import {ConsentLedgerHandler} from "./handlers/ConsentLedgerHandler.sol";
import {Test} from "./utils/Test.sol";

/// @dev Stateful fuzzing: random sequences of handler actions, then the ledger is checked against the
/// handler's ghost model over every (patient, record, grantee, purpose) of the small world.
contract ConsentLedgerInvariantTest is Test {
    bytes32 internal constant TREAT = "TREAT";
    bytes32 internal constant HPAYMT = "HPAYMT";
    bytes32 internal constant ETREAT = "ETREAT";

    ConsentLedger internal ledger;
    ConsentLedgerHandler internal handler;
    address[3] internal providers;
    // the fixed world, cached from the handler to keep the per-call checks cheap
    address[3] internal patients;
    bytes32[2][3] internal records;
    address[9] internal signers;

    function setUp() public {
        address admin = vm.addr(0xAD);
        uint256 custodianPk = 0xC0;
        uint256[3] memory providerPks = [uint256(0xD0), 0xD1, 0xD2];
        providers = [vm.addr(providerPks[0]), vm.addr(providerPks[1]), vm.addr(providerPks[2])];
        ledger = new ConsentLedger(admin);
        handler = new ConsentLedgerHandler(ledger, admin, custodianPk, providerPks);

        vm.startPrank(admin);
        ledger.grantRole(ledger.CUSTODIAN_ROLE(), vm.addr(custodianPk));
        ledger.grantRole(ledger.EMERGENCY_ROLE(), providers[2]);
        for (uint256 i; i < providers.length; ++i) {
            ledger.onboardProvider(providers[i], "provider");
        }
        vm.stopPrank();
        handler.anchorRecords();
        for (uint256 p; p < patients.length; ++p) {
            patients[p] = handler.patients(p);
            for (uint256 r; r < records[p].length; ++r) {
                records[p][r] = handler.recordOf(p, r);
            }
        }
        for (uint256 i; i < signers.length; ++i) {
            signers[i] = handler.signerOf(i);
        }

        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](16);
        selectors[0] = ConsentLedgerHandler.grantConsent.selector;
        selectors[1] = ConsentLedgerHandler.grantConsent.selector; // grants weigh double
        selectors[2] = ConsentLedgerHandler.revokeConsent.selector;
        selectors[3] = ConsentLedgerHandler.revokeConsent.selector; // and revocations: they meet re-grants
        selectors[4] = ConsentLedgerHandler.grantDelegate.selector;
        selectors[5] = ConsentLedgerHandler.revokeDelegate.selector;
        selectors[6] = ConsentLedgerHandler.warp.selector;
        selectors[7] = ConsentLedgerHandler.toggleSuspension.selector;
        selectors[8] = ConsentLedgerHandler.eraseRecord.selector;
        selectors[9] = ConsentLedgerHandler.amendRecord.selector;
        selectors[10] = ConsentLedgerHandler.logAccess.selector;
        selectors[11] = ConsentLedgerHandler.logAccess.selector;
        selectors[12] = ConsentLedgerHandler.logEmergencyAccess.selector;
        selectors[13] = ConsentLedgerHandler.invalidateNonce.selector;
        selectors[14] = ConsentLedgerHandler.delegateRegrantsRevoked.selector;
        selectors[15] = ConsentLedgerHandler.logPatientAccess.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    // ------------------------------------------------------------ invariants

    /// @dev No revoked consent is ever returned as the authorizing one, and revocations are stored.
    function invariant_revokedConsentNeverAuthorizes() public {
        _now();
        bytes32[] memory ids = handler.touchedConsents();
        for (uint256 i; i < ids.length; ++i) {
            (,,, bool revoked,) = handler.ghostConsent(ids[i]);
            if (revoked) vm.assertTrue(ledger.consent(ids[i]).revoked, "revocation lost");
        }
        _forEachAccess(_checkNotRevoked);
    }

    /// @dev A consent the patient revoked stays revoked, flagged as the patient's, and authorizes nothing until
    /// the patient grants it again: no delegate ever re-granted one.
    function invariant_revokedByPatientNeverAuthorizesUntilPatientRegrants() public {
        _now();
        vm.assertEq(handler.ghost_delegateUndidPatientRevocation(), 0, "a delegate undid the patient's revocation");
        bytes32[] memory ids = handler.touchedConsents();
        for (uint256 i; i < ids.length; ++i) {
            (,,, bool revoked, bool revokedByPatient) = handler.ghostConsent(ids[i]);
            IConsentLedger.Consent memory c = ledger.consent(ids[i]);
            vm.assertEq(c.revokedByPatient, revokedByPatient, "revokedByPatient");
            if (c.revokedByPatient) vm.assertTrue(c.revoked && revoked, "revokedByPatient without revoked");
        }
        _forEachAccess(_checkNotRevokedByPatient);
    }

    /// @dev Every nonce of every signer is used exactly when the model says so: a used nonce stays used, no
    /// signed message was accepted with a spent nonce, and none spent another signer's nonce.
    function invariant_usedNonceStaysUsed() public view {
        vm.assertEq(handler.ghost_nonceReplayAccepted(), 0, "a spent nonce was accepted");
        vm.assertEq(handler.ghost_invalidateMismatch(), 0, "invalidateNonce outcome");
        for (uint256 i; i < signers.length; ++i) {
            uint256 top = handler.nonceTop(signers[i]);
            for (uint256 n; n < top; ++n) {
                vm.assertEq(ledger.nonceUsed(signers[i], n), handler.ghostNonceUsed(signers[i], n), "nonce used");
            }
            vm.assertFalse(ledger.nonceUsed(signers[i], top), "a nonce the handler never used");
        }
    }

    /// @dev The authorizing consent, if any, is inside its validity window now.
    function invariant_expiredConsentNeverAuthorizes() public {
        _now();
        _forEachAccess(_checkInWindow);
    }

    /// @dev Only the patient or a live delegate changes a consent: no such change by anyone else ever
    /// succeeded, none by them failed, and the stored consents are exactly the model's.
    function invariant_onlyPatientOrLiveDelegateChangesConsent() public {
        _now();
        vm.assertEq(handler.ghost_unauthorizedConsentChange(), 0, "unauthorized consent change");
        vm.assertEq(handler.ghost_authorizedConsentChangeFailed(), 0, "authorized consent change failed");
        bytes32[] memory ids = handler.touchedConsents();
        for (uint256 i; i < ids.length; ++i) {
            (address patient, uint64 validFrom, uint64 validUntil, bool revoked,) = handler.ghostConsent(ids[i]);
            IConsentLedger.Consent memory c = ledger.consent(ids[i]);
            vm.assertEq(c.patient, patient, "consent patient");
            vm.assertEq(c.validFrom, validFrom, "consent validFrom");
            vm.assertEq(c.validUntil, validUntil, "consent validUntil");
            vm.assertEq(c.revoked, revoked, "consent revoked");
        }
    }

    /// @dev A suspended provider is authorized for nothing.
    function invariant_suspendedProviderNeverAuthorized() public {
        _now();
        for (uint256 g; g < providers.length; ++g) {
            vm.assertEq(ledger.isSuspended(providers[g]), handler.ghostSuspended(providers[g]), "suspension");
            if (!ledger.isSuspended(providers[g])) continue;
            vm.assertFalse(ledger.isActiveProvider(providers[g]));
            for (uint256 p; p < patients.length; ++p) {
                for (uint256 r; r < records[p].length; ++r) {
                    for (uint256 u; u < 3; ++u) {
                        vm.assertFalse(
                            ledger.isAuthorized(patients[p], providers[g], records[p][r], _purpose(u)),
                            "suspended provider authorized"
                        );
                    }
                }
            }
        }
    }

    /// @dev logAccessBySig succeeded only when the model authorized the access (a known version, the accessor's
    /// own signature), with an active consent, or with consent 0 for the patient's own PATRQT request signed by the
    /// patient (never for anyone else's request, another purpose or a delegate's signature), and never failed when
    /// it did.
    function invariant_logAccessNeverSucceedsWithoutAuthorization() public view {
        vm.assertEq(handler.ghost_logWithoutAuthorization(), 0, "logAccessBySig without authorization");
        vm.assertEq(handler.ghost_logWrongConsent(), 0, "logAccessBySig returned an inactive consent");
        vm.assertEq(handler.ghost_authorizedLogFailed(), 0, "authorized logAccessBySig failed");
    }

    /// @dev logEmergencyAccessBySig succeeded exactly for active providers holding EMERGENCY_ROLE on live records.
    function invariant_emergencyAccessRequiresEmergencyRole() public view {
        vm.assertEq(handler.ghost_emergencyMismatch(), 0, "emergency access outcome");
    }

    /// @dev isAuthorized equals the ghost model everywhere (which implies every invariant above for views).
    function invariant_authorizationMatchesModel() public {
        _now();
        _forEachAccess(_checkModel);
    }

    /// @dev Delegations, erasures and record versions equal the model; only the patient manages its
    /// delegations, only the patient or a live delegate erases, only the author amends.
    function invariant_delegationsAndRecordsMatchModel() public {
        _now();
        vm.assertEq(handler.ghost_delegationMismatch(), 0, "delegation change outcome");
        vm.assertEq(handler.ghost_eraseMismatch(), 0, "erase outcome");
        vm.assertEq(handler.ghost_amendMismatch(), 0, "amend outcome");
        for (uint256 p; p < patients.length; ++p) {
            address patient = patients[p];
            for (uint256 d; d < handler.DELEGATES(); ++d) {
                address delegate = handler.delegates(d);
                vm.assertEq(ledger.isLiveDelegate(patient, delegate), handler.ghostLive(patient, delegate), "live");
            }
            for (uint256 r; r < records[p].length; ++r) {
                (IConsentLedger.Record memory rec,) = ledger.record(patient, records[p][r]);
                vm.assertEq(rec.erased, handler.ghostErased(patient, r), "erased");
                vm.assertEq(rec.version, handler.ghostVersion(patient, r), "version");
            }
        }
    }

    // ------------------------------------------------------------ helpers

    /// @dev Invariants run in a fresh call context: use the run's time.
    function _now() internal {
        vm.warp(handler.time());
    }

    function _purpose(uint256 u) internal pure returns (bytes32) {
        bytes32[3] memory purposes = [TREAT, HPAYMT, ETREAT];
        return purposes[u];
    }

    function _forEachAccess(function(uint256, uint256, address, bytes32) internal view check) internal view {
        for (uint256 p; p < patients.length; ++p) {
            for (uint256 r; r < records[p].length; ++r) {
                for (uint256 g; g < providers.length; ++g) {
                    for (uint256 u; u < 3; ++u) {
                        check(p, r, providers[g], _purpose(u));
                    }
                }
            }
        }
    }

    function _authorizing(uint256 p, uint256 r, address grantee, bytes32 purpose) internal view returns (bytes32) {
        return ledger.authorizingConsent(patients[p], grantee, records[p][r], purpose);
    }

    function _checkNotRevoked(uint256 p, uint256 r, address grantee, bytes32 purpose) internal view {
        bytes32 id = _authorizing(p, r, grantee, purpose);
        if (id != 0) vm.assertFalse(ledger.consent(id).revoked, "revoked consent authorizes");
    }

    function _checkNotRevokedByPatient(uint256 p, uint256 r, address grantee, bytes32 purpose) internal view {
        bytes32 id = _authorizing(p, r, grantee, purpose);
        if (id != 0) vm.assertFalse(ledger.consent(id).revokedByPatient, "consent revoked by the patient authorizes");
    }

    function _checkInWindow(uint256 p, uint256 r, address grantee, bytes32 purpose) internal view {
        bytes32 id = _authorizing(p, r, grantee, purpose);
        if (id == 0) return;
        IConsentLedger.Consent memory c = ledger.consent(id);
        vm.assertTrue(c.validFrom <= block.timestamp, "consent not yet valid authorizes");
        vm.assertTrue(c.validUntil == 0 || block.timestamp < c.validUntil, "expired consent authorizes");
        vm.assertTrue(handler.ghostActive(id), "consent inactive in the model authorizes");
    }

    function _checkModel(uint256 p, uint256 r, address grantee, bytes32 purpose) internal view {
        vm.assertEq(
            ledger.isAuthorized(patients[p], grantee, records[p][r], purpose),
            handler.modelAuthorizes(p, r, grantee, purpose),
            "isAuthorized differs from the model"
        );
    }
}
