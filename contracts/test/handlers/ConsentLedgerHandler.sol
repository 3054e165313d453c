// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../../src/ConsentLedger.sol";
import {IConsentLedger} from "../../src/IConsentLedger.sol";
import {TestBase} from "../utils/Test.sol";

/// @dev Invariant handler: drives random consent grants/revocations (direct and signed, by patients, delegates
/// and outsiders), delegations, time, provider suspensions, erasures and access logging against a small fixed
/// world, and keeps a ghost model of what the ledger should contain. It never reverts: outcomes that contradict
/// the model are counted in `ghost_*` violation counters that the invariants require to stay zero.
contract ConsentLedgerHandler is TestBase {
    struct GhostConsent {
        address patient;
        uint64 validFrom;
        uint64 validUntil;
        bool revoked;
    }

    struct GhostDelegation {
        bool active;
        uint64 validUntil;
    }

    bytes32 internal constant TREAT = "TREAT";
    bytes32 internal constant HPAYMT = "HPAYMT";
    bytes32 internal constant ETREAT = "ETREAT";
    bytes32 internal constant LABORATORY = keccak256("laboratory");
    bytes32 internal constant IMAGING = keccak256("imaging");

    uint256 public constant PATIENTS = 3;
    uint256 public constant DELEGATES = 2;
    uint256 public constant PROVIDERS = 3;
    uint256 public constant RECORDS = 2; // per patient; record 1 may be erased, record 0 never is
    uint256 public constant PURPOSES = 2;

    ConsentLedger public immutable ledger;
    address internal immutable _admin;
    address internal immutable _custodian;

    uint256[PATIENTS] internal _patientPks;
    uint256[DELEGATES] internal _delegatePks;
    uint256 internal immutable _outsiderPk;
    address[PATIENTS] public patients;
    address[DELEGATES] public delegates;
    address[PROVIDERS] public providers; // providers[2] holds EMERGENCY_ROLE
    address public immutable outsider;
    bytes32[RECORDS][PATIENTS] internal _records;

    /// @dev The current time of the run (cheatcode warps do not reliably persist between runner calls).
    uint256 public time;

    // ghost model
    mapping(bytes32 consentId => GhostConsent) public ghostConsent;
    bytes32[] internal _touchedConsents; // every consent id any action targeted, granted or not
    mapping(bytes32 consentId => bool) internal _touched;
    mapping(address patient => mapping(address delegate => GhostDelegation)) public ghostDelegation;
    mapping(address provider => bool) public ghostSuspended;
    mapping(address patient => mapping(uint256 index => bool)) public ghostErased;
    mapping(address patient => uint256) public ghostNonce;

    // violation counters (must stay 0)
    uint256 public ghost_unauthorizedConsentChange; // a grant/revoke by neither patient nor live delegate succeeded
    uint256 public ghost_authorizedConsentChangeFailed; // a valid grant/revoke by an authorized actor failed
    uint256 public ghost_delegationMismatch; // a delegation change succeeded/failed against the model
    uint256 public ghost_logWithoutAuthorization; // logAccess succeeded though the model says unauthorized
    uint256 public ghost_logWrongConsent; // logAccess returned a consent that is not active in the model
    uint256 public ghost_authorizedLogFailed; // logAccess failed though the model says authorized
    uint256 public ghost_emergencyMismatch; // logEmergencyAccess outcome differs from the model
    uint256 public ghost_eraseMismatch;

    // coverage counters
    mapping(bytes32 action => uint256) public calls;

    constructor(ConsentLedger ledger_, address admin_, address custodian_, address[PROVIDERS] memory providers_) {
        ledger = ledger_;
        _admin = admin_;
        _custodian = custodian_;
        providers = providers_;
        time = block.timestamp;
        for (uint256 i; i < PATIENTS; ++i) {
            _patientPks[i] = 0x1000 + i;
            patients[i] = vm.addr(_patientPks[i]);
        }
        for (uint256 i; i < DELEGATES; ++i) {
            _delegatePks[i] = 0x2000 + i;
            delegates[i] = vm.addr(_delegatePks[i]);
        }
        _outsiderPk = 0x3000;
        outsider = vm.addr(_outsiderPk);
    }

    /// @dev Called once by the test after the ledger roles are set up: anchors the records.
    function anchorRecords() external {
        for (uint256 p; p < PATIENTS; ++p) {
            vm.prank(providers[0]);
            _records[p][0] = ledger.anchorRecord(patients[p], LABORATORY, bytes32(p), hex"01", keccak256("c"));
            vm.prank(providers[1]);
            _records[p][1] = ledger.anchorRecord(patients[p], IMAGING, bytes32(p), hex"02", keccak256("c"));
        }
    }

    modifier useTime(bytes32 action) {
        vm.warp(time);
        ++calls[action];
        _;
    }

    // ------------------------------------------------------------ actions

    function grantConsent(
        uint256 actorSeed,
        uint256 patientSeed,
        uint256 granteeSeed,
        uint256 scopeSeed,
        uint256 purposeSeed,
        uint256 fromSeed,
        uint256 durationSeed,
        bool bySig
    ) external useTime("grantConsent") {
        address patient = patients[patientSeed % PATIENTS];
        (address actor, uint256 actorPk) = _actor(actorSeed, patientSeed);
        address grantee = providers[granteeSeed % PROVIDERS];
        bytes32 scope = scopeOf(patientSeed % PATIENTS, scopeSeed);
        bytes32 purpose = purposeOf(purposeSeed);
        uint64 validFrom = uint64(bound(fromSeed, time - 2 days, time + 2 days));
        uint64 validUntil = durationSeed % 4 == 0 ? 0 : validFrom + uint64(bound(durationSeed, 1, 4 days));
        bytes32 id = _consentId(patient, grantee, scope, purpose);
        _touch(id);
        bool authorized = actor == patient || _ghostLive(patient, actor);

        bool ok;
        if (bySig) {
            IConsentLedger.ConsentGrant memory g = IConsentLedger.ConsentGrant({
                patient: patient,
                grantee: grantee,
                scope: scope,
                purpose: purpose,
                validFrom: validFrom,
                validUntil: validUntil,
                nonce: ledger.nonces(patient),
                deadline: time + 1 hours
            });
            bytes memory sig = _sign(actorPk, keccak256(abi.encode(ledger.CONSENT_GRANT_TYPEHASH(), g)));
            vm.prank(outsider); // relayed
            try ledger.grantConsentBySig(g, sig) {
                ok = true;
            } catch {}
        } else {
            vm.prank(actor);
            try ledger.grantConsent(patient, grantee, scope, purpose, validFrom, validUntil) {
                ok = true;
            } catch {}
        }

        if (ok && !authorized) ++ghost_unauthorizedConsentChange;
        if (!ok && authorized) ++ghost_authorizedConsentChangeFailed;
        if (ok) {
            ghostConsent[id] = GhostConsent(patient, validFrom, validUntil, false);
            if (bySig) ++ghostNonce[patient];
        }
    }

    function revokeConsent(uint256 actorSeed, uint256 consentSeed, bool bySig) external useTime("revokeConsent") {
        if (_touchedConsents.length == 0) return;
        bytes32 id = _touchedConsents[consentSeed % _touchedConsents.length];
        GhostConsent memory c = ghostConsent[id];
        // a never-granted id: pretend it belongs to some patient (the revocation must fail)
        address patient = c.patient != address(0) ? c.patient : patients[consentSeed % PATIENTS];
        (address actor, uint256 actorPk) = _actor(actorSeed, consentSeed);
        bool authorized = (actor == patient || _ghostLive(patient, actor)) && c.patient != address(0) && !c.revoked;

        bool ok;
        if (bySig) {
            IConsentLedger.ConsentRevoke memory r = IConsentLedger.ConsentRevoke({
                patient: patient, consentId: id, nonce: ledger.nonces(patient), deadline: time
            });
            bytes memory sig = _sign(actorPk, keccak256(abi.encode(ledger.CONSENT_REVOKE_TYPEHASH(), r)));
            vm.prank(outsider);
            try ledger.revokeConsentBySig(r, sig) {
                ok = true;
            } catch {}
        } else {
            vm.prank(actor);
            try ledger.revokeConsent(id) {
                ok = true;
            } catch {}
        }

        if (ok && !authorized) ++ghost_unauthorizedConsentChange;
        if (!ok && authorized) ++ghost_authorizedConsentChangeFailed;
        if (ok) {
            ghostConsent[id].revoked = true;
            if (bySig) ++ghostNonce[patient];
        }
    }

    function grantDelegate(uint256 patientSeed, uint256 delegateSeed, uint256 untilSeed, uint8 mode)
        external
        useTime("grantDelegate")
    {
        address patient = patients[patientSeed % PATIENTS];
        address delegate = delegates[delegateSeed % DELEGATES];
        uint64 validUntil = untilSeed % 4 == 0 ? 0 : uint64(bound(untilSeed, time - 1 days, time + 4 days));
        mode %= 3;
        bool ok;
        if (mode == 0) {
            vm.prank(patient);
            try ledger.grantDelegate(delegate, validUntil) {
                ok = true;
            } catch {}
        } else {
            // mode 1: signed by the patient; mode 2: signed by the (possibly live) delegate itself, must fail
            IConsentLedger.DelegateGrant memory d = IConsentLedger.DelegateGrant({
                patient: patient,
                delegate: delegate,
                validUntil: validUntil,
                nonce: ledger.nonces(patient),
                deadline: time
            });
            uint256 pk = mode == 1 ? _patientPks[patientSeed % PATIENTS] : _delegatePks[delegateSeed % DELEGATES];
            bytes memory sig = _sign(pk, keccak256(abi.encode(ledger.DELEGATE_GRANT_TYPEHASH(), d)));
            try ledger.grantDelegateBySig(d, sig) {
                ok = true;
            } catch {}
        }
        if (ok != (mode != 2)) ++ghost_delegationMismatch;
        if (ok) {
            ghostDelegation[patient][delegate] = GhostDelegation(true, validUntil);
            if (mode == 1) ++ghostNonce[patient];
        }
    }

    function revokeDelegate(uint256 patientSeed, uint256 delegateSeed) external useTime("revokeDelegate") {
        address patient = patients[patientSeed % PATIENTS];
        address delegate = delegates[delegateSeed % DELEGATES];
        bool expected = ghostDelegation[patient][delegate].active;
        bool ok;
        vm.prank(patient);
        try ledger.revokeDelegate(delegate) {
            ok = true;
        } catch {}
        if (ok != expected) ++ghost_delegationMismatch;
        if (ok) delete ghostDelegation[patient][delegate];
    }

    function warp(uint256 seconds_) external useTime("warp") {
        time += bound(seconds_, 1, 2 days);
        vm.warp(time);
    }

    function toggleSuspension(uint256 providerSeed) external useTime("toggleSuspension") {
        address provider = providers[providerSeed % PROVIDERS];
        vm.prank(_admin);
        if (ghostSuspended[provider]) {
            ledger.reinstateProvider(provider);
        } else {
            ledger.suspendProvider(provider);
        }
        ghostSuspended[provider] = !ghostSuspended[provider];
    }

    function eraseRecord(uint256 patientSeed, uint256 actorSeed) external useTime("eraseRecord") {
        uint256 p = patientSeed % PATIENTS;
        address patient = patients[p];
        (address actor,) = _actor(actorSeed, patientSeed);
        bool expected = (actor == patient || _ghostLive(patient, actor)) && !ghostErased[patient][1];
        bool ok;
        vm.prank(actor);
        try ledger.eraseRecord(patient, _records[p][1]) {
            ok = true;
        } catch {}
        if (ok != expected) ++ghost_eraseMismatch;
        if (ok) ghostErased[patient][1] = true;
    }

    function logAccess(uint256 patientSeed, uint256 recordSeed, uint256 accessorSeed, uint256 purposeSeed)
        external
        useTime("logAccess")
    {
        uint256 p = patientSeed % PATIENTS;
        uint256 r = recordSeed % RECORDS;
        address accessor = providers[accessorSeed % PROVIDERS];
        bytes32 purpose = purposeSeed % 7 == 0 ? ETREAT : purposeOf(purposeSeed);
        bool expected = modelAuthorizes(p, r, accessor, purpose);
        vm.prank(_custodian);
        try ledger.logAccess(patients[p], _records[p][r], accessor, purpose) returns (bytes32 consentId) {
            if (!expected) ++ghost_logWithoutAuthorization;
            if (!_ghostActive(consentId)) ++ghost_logWrongConsent;
        } catch {
            if (expected) ++ghost_authorizedLogFailed;
        }
    }

    function logEmergencyAccess(uint256 patientSeed, uint256 recordSeed, uint256 accessorSeed)
        external
        useTime("logEmergencyAccess")
    {
        uint256 p = patientSeed % PATIENTS;
        uint256 r = recordSeed % RECORDS;
        uint256 a = accessorSeed % (PROVIDERS + 1);
        address accessor = a == PROVIDERS ? outsider : providers[a];
        bool expected = a == 2 && !ghostSuspended[accessor] && !ghostErased[patients[p]][r];
        bool ok;
        vm.prank(_custodian);
        try ledger.logEmergencyAccess(patients[p], _records[p][r], accessor, keccak256("reason")) {
            ok = true;
        } catch {}
        if (ok != expected) ++ghost_emergencyMismatch;
    }

    // ------------------------------------------------------------ model

    function scopeOf(uint256 p, uint256 seed) public view returns (bytes32) {
        uint256 s = seed % 5;
        if (s < RECORDS) return _records[p % PATIENTS][s];
        if (s == 2) return LABORATORY;
        if (s == 3) return IMAGING;
        return bytes32(0);
    }

    function purposeOf(uint256 seed) public pure returns (bytes32) {
        return seed % PURPOSES == 0 ? TREAT : HPAYMT;
    }

    function recordOf(uint256 p, uint256 r) external view returns (bytes32) {
        return _records[p][r];
    }

    function touchedConsents() external view returns (bytes32[] memory) {
        return _touchedConsents;
    }

    /// @dev What the ledger's authorization should be, from the ghost state alone.
    function modelAuthorizes(uint256 p, uint256 r, address grantee, bytes32 purpose) public view returns (bool) {
        address patient = patients[p];
        if (ghostErased[patient][r] || ghostSuspended[grantee] || purpose == ETREAT) return false;
        bytes32 category = r == 0 ? LABORATORY : IMAGING;
        return _ghostActive(_consentId(patient, grantee, _records[p][r], purpose))
            || _ghostActive(_consentId(patient, grantee, category, purpose))
            || _ghostActive(_consentId(patient, grantee, 0, purpose));
    }

    function ghostActive(bytes32 consentId) external view returns (bool) {
        return _ghostActive(consentId);
    }

    function _ghostActive(bytes32 consentId) internal view returns (bool) {
        GhostConsent memory c = ghostConsent[consentId];
        return
            c.patient != address(0) && !c.revoked && c.validFrom <= time && (c.validUntil == 0 || time < c.validUntil);
    }

    function ghostLive(address patient, address delegate) external view returns (bool) {
        return _ghostLive(patient, delegate);
    }

    function _ghostLive(address patient, address delegate) internal view returns (bool) {
        GhostDelegation memory d = ghostDelegation[patient][delegate];
        return d.active && (d.validUntil == 0 || time < d.validUntil);
    }

    // ------------------------------------------------------------ helpers

    /// @dev The acting party: the patient (40%), one of the delegates (40%), or the outsider (20%).
    function _actor(uint256 seed, uint256 patientSeed) internal view returns (address, uint256) {
        uint256 s = seed % 5;
        if (s < 2) return (patients[patientSeed % PATIENTS], _patientPks[patientSeed % PATIENTS]);
        if (s < 4) return (delegates[s - 2], _delegatePks[s - 2]);
        return (outsider, _outsiderPk);
    }

    function _consentId(address patient, address grantee, bytes32 scope, bytes32 purpose)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(patient, grantee, scope, purpose));
    }

    function _touch(bytes32 id) internal {
        if (!_touched[id]) {
            _touched[id] = true;
            _touchedConsents.push(id);
        }
    }

    function _sign(uint256 pk, bytes32 structHash) internal view returns (bytes memory) {
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", ledger.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }
}
