// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../../src/ConsentLedger.sol";
import {IConsentLedger} from "../../src/IConsentLedger.sol";
import {TestBase} from "../utils/Test.sol";

/// @dev Invariant handler: drives random consent grants/revocations (direct and signed, by patients, delegates
/// and outsiders), delegations (granted and revoked, directly and by signature), time, provider suspensions,
/// amendments, erasures, signed access and emergency requests and nonce invalidations against a small fixed
/// world, and keeps a ghost model of what the ledger should contain. Signed messages draw their nonce from a
/// small range, so replays and cross-signer collisions happen often. The handler never reverts: outcomes that
/// contradict the model are counted in `ghost_*` violation counters that the invariants require to stay zero.
contract ConsentLedgerHandler is TestBase {
    struct GhostConsent {
        address patient;
        uint64 validFrom;
        uint64 validUntil;
        bool revoked;
        bool revokedByPatient;
    }

    /// @dev What a consent id stands for, so that later actions can aim at an existing consent.
    struct ConsentKey {
        uint256 p;
        address grantee;
        bytes32 scope;
        bytes32 purpose;
    }

    struct GhostDelegation {
        bool active;
        uint64 validUntil;
    }

    bytes32 internal constant TREAT = "TREAT";
    bytes32 internal constant HPAYMT = "HPAYMT";
    bytes32 internal constant ETREAT = "ETREAT";
    bytes32 internal constant PATRQT = "PATRQT";
    bytes32 internal constant LABORATORY = keccak256("laboratory");
    bytes32 internal constant IMAGING = keccak256("imaging");

    uint256 public constant PATIENTS = 3;
    uint256 public constant DELEGATES = 2;
    uint256 public constant PROVIDERS = 3;
    uint256 public constant RECORDS = 2; // per patient; record r is authored by providers[r]; record 1 may be erased
    uint256 public constant PURPOSES = 2;
    uint256 public constant NONCES = 8; // one signed message in four reuses one of nonces 0 to 7 (replays)
    uint256 public constant SIGNERS = PATIENTS + DELEGATES + PROVIDERS + 1;

    ConsentLedger public immutable ledger;
    address internal immutable _admin;
    uint256 internal immutable _custodianPk;

    uint256[PATIENTS] internal _patientPks;
    uint256[DELEGATES] internal _delegatePks;
    uint256[PROVIDERS] internal _providerPks;
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
    mapping(bytes32 consentId => ConsentKey) internal _keys;
    mapping(address signer => uint256) internal _freshNonces;
    mapping(address patient => mapping(address delegate => GhostDelegation)) public ghostDelegation;
    mapping(address provider => bool) public ghostSuspended;
    mapping(address patient => mapping(uint256 index => bool)) public ghostErased;
    mapping(address patient => mapping(uint256 index => uint32)) public ghostVersion;
    mapping(address signer => mapping(uint256 nonce => bool)) public ghostNonceUsed;

    // violation counters (must stay 0)
    uint256 public ghost_unauthorizedConsentChange; // a grant/revoke the model refuses succeeded
    uint256 public ghost_authorizedConsentChangeFailed; // a grant/revoke the model allows failed
    uint256 public ghost_delegateUndidPatientRevocation; // a delegate re-granted a consent the patient revoked
    uint256 public ghost_nonceReplayAccepted; // a signed message with a spent nonce succeeded
    uint256 public ghost_delegationMismatch; // a delegation change succeeded/failed against the model
    uint256 public ghost_logWithoutAuthorization; // logAccessBySig succeeded though the model refuses it
    uint256 public ghost_logWrongConsent; // logAccessBySig returned a consent that is not active in the model (or,
    // for the patient's own PATRQT request, not consent 0)
    uint256 public ghost_authorizedLogFailed; // logAccessBySig failed though the model allows it
    uint256 public ghost_emergencyMismatch; // logEmergencyAccessBySig outcome differs from the model
    uint256 public ghost_eraseMismatch;
    uint256 public ghost_amendMismatch;
    uint256 public ghost_invalidateMismatch;

    // coverage counters
    mapping(bytes32 action => uint256) public calls;
    uint256 public patientRequestsLogged; // the patients' own PATRQT requests logged (consent 0)

    constructor(ConsentLedger ledger_, address admin_, uint256 custodianPk_, uint256[PROVIDERS] memory providerPks_) {
        ledger = ledger_;
        _admin = admin_;
        _custodianPk = custodianPk_;
        _providerPks = providerPks_;
        time = block.timestamp;
        for (uint256 i; i < PATIENTS; ++i) {
            _patientPks[i] = 0x1000 + i;
            patients[i] = vm.addr(_patientPks[i]);
        }
        for (uint256 i; i < DELEGATES; ++i) {
            _delegatePks[i] = 0x2000 + i;
            delegates[i] = vm.addr(_delegatePks[i]);
        }
        for (uint256 i; i < PROVIDERS; ++i) {
            providers[i] = vm.addr(providerPks_[i]);
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
            ghostVersion[patients[p]][0] = 1;
            ghostVersion[patients[p]][1] = 1;
        }
    }

    modifier useTime(bytes32 action) {
        vm.warp(time);
        ++calls[action];
        _;
    }

    // ------------------------------------------------------------ actions: consent

    function grantConsent(
        uint256 actorSeed,
        uint256 patientSeed,
        uint256 granteeSeed,
        uint256 scopeSeed,
        uint256 purposeSeed,
        uint256 fromSeed,
        uint256 durationSeed,
        uint256 nonceSeed,
        bool bySig
    ) external useTime("grantConsent") {
        uint64 validFrom = uint64(bound(fromSeed, time - 2 days, time + 12 hours));
        ConsentKey memory key = ConsentKey(patientSeed % PATIENTS, providers[granteeSeed % PROVIDERS], 0, 0);
        key.scope = scopeOf(key.p, scopeSeed);
        key.purpose = purposeOf(purposeSeed);
        if (scopeSeed % 3 == 0 && _touchedConsents.length != 0) {
            key = _keys[_touchedConsents[granteeSeed % _touchedConsents.length]]; // grant an existing one again
        }
        (address actor, uint256 actorPk) = _actor(actorSeed, key.p);
        IConsentLedger.ConsentGrant memory g = IConsentLedger.ConsentGrant({
            patient: patients[key.p],
            grantee: key.grantee,
            scope: key.scope,
            purpose: key.purpose,
            validFrom: validFrom,
            validUntil: durationSeed % 4 == 0 ? 0 : validFrom + uint64(bound(durationSeed, 1, 4 days)),
            nonce: _nonceFor(actor, nonceSeed),
            deadline: time + 1 hours
        });
        _touch(_consentId(g.patient, g.grantee, g.scope, g.purpose), key);
        _grantConsent(g, actor, actorPk, bySig);
    }

    function _grantConsent(IConsentLedger.ConsentGrant memory g, address actor, uint256 actorPk, bool bySig) internal {
        bytes32 id = _consentId(g.patient, g.grantee, g.scope, g.purpose);
        bool byDelegate = actor != g.patient && _ghostLive(g.patient, actor);
        bool patientRevoked = ghostConsent[id].revokedByPatient;
        bool expected = (actor == g.patient || byDelegate) && !(byDelegate && patientRevoked)
            && !(bySig && ghostNonceUsed[actor][g.nonce]);

        bool ok;
        if (bySig) {
            bytes memory sig = _sign(actorPk, keccak256(abi.encode(ledger.CONSENT_GRANT_TYPEHASH(), g)));
            vm.prank(outsider); // relayed
            try ledger.grantConsentBySig(g, sig) {
                ok = true;
            } catch {}
        } else {
            vm.prank(actor);
            try ledger.grantConsent(g.patient, g.grantee, g.scope, g.purpose, g.validFrom, g.validUntil) {
                ok = true;
            } catch {}
        }

        _countConsentChange(ok, expected);
        if (ok && byDelegate && patientRevoked) ++ghost_delegateUndidPatientRevocation;
        if (ok) {
            ghostConsent[id] = GhostConsent(g.patient, g.validFrom, g.validUntil, false, false);
            if (bySig) _spend(actor, g.nonce);
        }
    }

    function revokeConsent(uint256 actorSeed, uint256 consentSeed, uint256 nonceSeed, bool bySig)
        external
        useTime("revokeConsent")
    {
        if (_touchedConsents.length == 0) return;
        bytes32 id = _touchedConsents[consentSeed % _touchedConsents.length];
        GhostConsent memory c = ghostConsent[id];
        address patient = patients[_keys[id].p]; // for a never-granted id too (its revocation must fail)
        (address actor, uint256 actorPk) = _actor(actorSeed, _keys[id].p);
        uint256 nonce = _nonceFor(actor, nonceSeed);
        // Revocable: not revoked, or (by its patient) revoked by a delegate only, which the patient makes their own.
        bool revocable = !c.revoked || (actor == patient && !c.revokedByPatient);
        bool expected = (actor == patient || _ghostLive(patient, actor)) && c.patient != address(0) && revocable
            && !(bySig && ghostNonceUsed[actor][nonce]);

        bool ok;
        if (bySig) {
            IConsentLedger.ConsentRevoke memory r =
                IConsentLedger.ConsentRevoke({patient: patient, consentId: id, nonce: nonce, deadline: time});
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

        _countConsentChange(ok, expected);
        if (ok) {
            ghostConsent[id].revoked = true;
            ghostConsent[id].revokedByPatient = actor == patient || c.revokedByPatient;
            if (bySig) _spend(actor, nonce);
        }
    }

    /// @dev The guardian attack: a delegate (the patient's live one if there is one) grants again a consent the
    /// patient revoked, or if there is none, a revoked one, directly or by signature. The model expects the
    /// former to fail always; the latter to succeed when the delegate is live.
    function delegateRegrantsRevoked(uint256 seed, uint256 delegateSeed, uint256 nonceSeed, bool bySig)
        external
        useTime("delegateRegrantsRevoked")
    {
        uint256 n = _touchedConsents.length;
        if (n == 0) return;
        uint256 start = seed % n;
        bytes32 id = _touchedConsents[start];
        for (uint256 i; i < n; ++i) {
            bytes32 candidate = _touchedConsents[(start + i) % n];
            if (ghostConsent[candidate].revokedByPatient) {
                id = candidate;
                break;
            }
            if (ghostConsent[candidate].revoked) id = candidate;
        }
        ConsentKey memory key = _keys[id];
        uint256 d = delegateSeed % DELEGATES;
        if (!_ghostLive(patients[key.p], delegates[d])) d = (d + 1) % DELEGATES;
        IConsentLedger.ConsentGrant memory g = IConsentLedger.ConsentGrant({
            patient: patients[key.p],
            grantee: key.grantee,
            scope: key.scope,
            purpose: key.purpose,
            validFrom: 0,
            validUntil: 0,
            nonce: _nonceFor(delegates[d], nonceSeed),
            deadline: time + 1 hours
        });
        _grantConsent(g, delegates[d], _delegatePks[d], bySig);
    }

    // ------------------------------------------------------------ actions: delegations

    /// @dev mode 0: direct; 1: signed by the patient; 2: signed by the delegate itself (must fail).
    function grantDelegate(uint256 patientSeed, uint256 delegateSeed, uint256 untilSeed, uint8 mode, uint256 nonceSeed)
        external
        useTime("grantDelegate")
    {
        address patient = patients[patientSeed % PATIENTS];
        address delegate = delegates[delegateSeed % DELEGATES];
        uint64 validUntil = untilSeed % 4 == 0 ? 0 : uint64(bound(untilSeed, time - 1 days, time + 4 days));
        mode %= 3;
        uint256 nonce = _nonceFor(mode == 2 ? delegate : patient, nonceSeed);
        bool expected = mode == 0 || (mode == 1 && !ghostNonceUsed[patient][nonce]);
        bool ok;
        if (mode == 0) {
            vm.prank(patient);
            try ledger.grantDelegate(delegate, validUntil) {
                ok = true;
            } catch {}
        } else {
            IConsentLedger.DelegateGrant memory d = IConsentLedger.DelegateGrant({
                patient: patient, delegate: delegate, validUntil: validUntil, nonce: nonce, deadline: time
            });
            uint256 pk = mode == 1 ? _patientPks[patientSeed % PATIENTS] : _delegatePks[delegateSeed % DELEGATES];
            bytes memory sig = _sign(pk, keccak256(abi.encode(ledger.DELEGATE_GRANT_TYPEHASH(), d)));
            try ledger.grantDelegateBySig(d, sig) {
                ok = true;
            } catch {}
        }
        if (ok != expected) ++ghost_delegationMismatch;
        if (ok) {
            ghostDelegation[patient][delegate] = GhostDelegation(true, validUntil);
            if (mode == 1) _spend(patient, nonce);
        }
    }

    /// @dev mode 0: direct; 1: signed by the patient; 2: signed by the delegate itself (must fail).
    function revokeDelegate(uint256 patientSeed, uint256 delegateSeed, uint8 mode, uint256 nonceSeed)
        external
        useTime("revokeDelegate")
    {
        address patient = patients[patientSeed % PATIENTS];
        address delegate = delegates[delegateSeed % DELEGATES];
        mode %= 3;
        uint256 nonce = _nonceFor(mode == 2 ? delegate : patient, nonceSeed);
        bool expected =
            ghostDelegation[patient][delegate].active && (mode == 0 || (mode == 1 && !ghostNonceUsed[patient][nonce]));
        bool ok;
        if (mode == 0) {
            vm.prank(patient);
            try ledger.revokeDelegate(delegate) {
                ok = true;
            } catch {}
        } else {
            IConsentLedger.DelegateRevoke memory d =
                IConsentLedger.DelegateRevoke({patient: patient, delegate: delegate, nonce: nonce, deadline: time});
            uint256 pk = mode == 1 ? _patientPks[patientSeed % PATIENTS] : _delegatePks[delegateSeed % DELEGATES];
            bytes memory sig = _sign(pk, keccak256(abi.encode(ledger.DELEGATE_REVOKE_TYPEHASH(), d)));
            try ledger.revokeDelegateBySig(d, sig) {
                ok = true;
            } catch {}
        }
        if (ok != expected) ++ghost_delegationMismatch;
        if (ok) {
            delete ghostDelegation[patient][delegate];
            if (mode == 1) _spend(patient, nonce);
        }
    }

    // ------------------------------------------------------------ actions: world

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

    /// @dev Invalidation by any of the world's signers (patients, delegates, providers, the outsider).
    function invalidateNonce(uint256 signerSeed, uint256 nonceSeed) external useTime("invalidateNonce") {
        (address signer,) = _signer(signerSeed);
        uint256 nonce = nonceSeed % nonceTop(signer); // a replay-range nonce or one handed out already
        bool expected = !ghostNonceUsed[signer][nonce];
        bool ok;
        vm.prank(signer);
        try ledger.invalidateNonce(nonce) {
            ok = true;
        } catch {}
        if (ok != expected) ++ghost_invalidateMismatch;
        if (ok) ghostNonceUsed[signer][nonce] = true;
    }

    // ------------------------------------------------------------ actions: records

    /// @dev An amendment of record r, sent or signed by providers[signerSeed % PROVIDERS] (the author is providers[r]).
    function amendRecord(uint256 patientSeed, uint256 recordSeed, uint256 signerSeed, uint256 nonceSeed, bool bySig)
        external
        useTime("amendRecord")
    {
        uint256 p = patientSeed % PATIENTS;
        uint256 r = recordSeed % RECORDS;
        address patient = patients[p];
        uint256 s = signerSeed % PROVIDERS;
        address signer = providers[s];
        uint256 nonce = _nonceFor(signer, nonceSeed);
        bool expected =
            s == r && !ghostSuspended[signer] && !ghostErased[patient][r] && !(bySig && ghostNonceUsed[signer][nonce]);
        (, bytes32 head) = ledger.record(patient, _records[p][r]);
        bool ok;
        if (bySig) {
            IConsentLedger.RecordAmend memory a = IConsentLedger.RecordAmend({
                patient: patient,
                author: signer,
                recordId: _records[p][r],
                cid: hex"03",
                commitment: keccak256(abi.encode(time)),
                previousHash: head,
                nonce: nonce,
                deadline: time
            });
            bytes memory sig = _sign(_providerPks[s], _hashAmend(a));
            try ledger.amendRecordBySig(a, sig) {
                ok = true;
            } catch {}
        } else {
            vm.prank(signer);
            try ledger.amendRecord(patient, _records[p][r], hex"03", keccak256(abi.encode(time)), head) {
                ok = true;
            } catch {}
        }
        if (ok != expected) ++ghost_amendMismatch;
        if (ok) {
            ++ghostVersion[patient][r];
            if (bySig) _spend(signer, nonce);
        }
    }

    function eraseRecord(uint256 patientSeed, uint256 actorSeed, uint256 nonceSeed, bool bySig)
        external
        useTime("eraseRecord")
    {
        uint256 p = patientSeed % PATIENTS;
        address patient = patients[p];
        (address actor, uint256 actorPk) = _actor(actorSeed, patientSeed);
        uint256 nonce = _nonceFor(actor, nonceSeed);
        bool expected = (actor == patient || _ghostLive(patient, actor)) && !ghostErased[patient][1]
            && !(bySig && ghostNonceUsed[actor][nonce]);
        bool ok;
        if (bySig) {
            IConsentLedger.RecordErase memory e =
                IConsentLedger.RecordErase({patient: patient, recordId: _records[p][1], nonce: nonce, deadline: time});
            bytes memory sig = _sign(actorPk, keccak256(abi.encode(ledger.RECORD_ERASE_TYPEHASH(), e)));
            vm.prank(outsider);
            try ledger.eraseRecordBySig(e, sig) {
                ok = true;
            } catch {}
        } else {
            vm.prank(actor);
            try ledger.eraseRecord(patient, _records[p][1]) {
                ok = true;
            } catch {}
        }
        if (ok != expected) ++ghost_eraseMismatch;
        if (ok) {
            ghostErased[patient][1] = true;
            if (bySig) _spend(actor, nonce);
        }
    }

    // ------------------------------------------------------------ actions: disclosures

    /// @dev A signed access request of providers[accessorSeed], half the time aimed at an existing consent; one
    /// time in eight the custodian signs it instead (must fail). The version ranges over 0 to head + 1.
    function logAccess(
        uint256 patientSeed,
        uint256 recordSeed,
        uint256 accessorSeed,
        uint256 purposeSeed,
        uint256 versionSeed,
        uint256 nonceSeed
    ) external useTime("logAccess") {
        uint256 p = patientSeed % PATIENTS;
        uint256 r = recordSeed % RECORDS;
        uint256 a = accessorSeed % PROVIDERS;
        bytes32 purpose = purposeSeed % 7 == 0 ? ETREAT : purposeOf(purposeSeed);
        if (patientSeed % 2 == 0 && _touchedConsents.length != 0) {
            // aim at an existing consent, active if there is one: its patient, grantee and purpose, a record in
            // its scope
            ConsentKey memory key = _keys[_someConsent(accessorSeed)];
            (p, purpose) = (key.p, key.purpose);
            for (uint256 i; i < PROVIDERS; ++i) {
                if (providers[i] == key.grantee) a = i;
            }
            if (key.scope == _records[p][0] || key.scope == LABORATORY) r = 0;
            if (key.scope == _records[p][1] || key.scope == IMAGING) r = 1;
        }
        address accessor = providers[a];
        uint32 head = ghostVersion[patients[p]][r];
        // the head half the time, else any of 0 to head + 1 (0 and head + 1 must fail)
        uint32 version = versionSeed % 2 == 0 ? head : uint32((versionSeed >> 1) % (uint256(head) + 2));
        uint256 nonce = _nonceFor(accessor, nonceSeed);
        bool custodianSigns = versionSeed % 8 == 1;
        bool expected = modelAuthorizes(p, r, accessor, purpose) && version != 0 && version <= head && !custodianSigns
            && !ghostNonceUsed[accessor][nonce];
        IConsentLedger.AccessRequest memory q = IConsentLedger.AccessRequest({
            patient: patients[p],
            accessor: accessor,
            recordId: _records[p][r],
            version: version,
            purpose: purpose,
            nonce: nonce,
            deadline: time
        });
        bytes memory sig = _sign(
            custodianSigns ? _custodianPk : _providerPks[a], keccak256(abi.encode(ledger.ACCESS_REQUEST_TYPEHASH(), q))
        );
        vm.prank(outsider);
        try ledger.logAccessBySig(q, sig) returns (bytes32 consentId) {
            if (!expected) ++ghost_logWithoutAuthorization;
            if (!_ghostActive(consentId)) ++ghost_logWrongConsent;
            _spend(accessor, nonce);
        } catch {
            if (expected) ++ghost_authorizedLogFailed;
        }
    }

    /// @dev A signed access request whose accessor is no provider (no consent can cover it): the patient itself
    /// half the time, else another patient, a delegate or the outsider; PATRQT three times in four. Only the
    /// patient's own PATRQT request, signed by the patient, may be logged, with consent 0. One time in four a
    /// delegate of the patient signs instead of the accessor (a delegate reading for the patient: must fail).
    function logPatientAccess(
        uint256 patientSeed,
        uint256 recordSeed,
        uint256 accessorSeed,
        uint256 purposeSeed,
        uint256 versionSeed,
        uint256 nonceSeed
    ) external useTime("logPatientAccess") {
        uint256 p = patientSeed % PATIENTS;
        uint256 r = recordSeed % RECORDS;
        address patient = patients[p];
        (address accessor, uint256 signerPk) = (patient, _patientPks[p]);
        if (accessorSeed % 2 == 1) (accessor, signerPk) = _signer((accessorSeed >> 1) % (PATIENTS + DELEGATES + 1));
        if (accessor == providers[0] || accessor == providers[1] || accessor == providers[2]) {
            (accessor, signerPk) = (outsider, _outsiderPk); // the last index is providers[0] in _signer's order
        }
        if (versionSeed % 4 == 3) signerPk = _delegatePks[(versionSeed >> 2) % DELEGATES];
        bytes32 purpose = purposeSeed % 4 != 0 ? PATRQT : (purposeSeed % 8 == 4 ? ETREAT : purposeOf(purposeSeed >> 3));
        uint32 head = ghostVersion[patient][r];
        uint32 version = versionSeed % 2 == 0 ? head : uint32((versionSeed >> 4) % (uint256(head) + 2));
        uint256 nonce = _nonceFor(accessor, nonceSeed);
        bool expected = accessor == patient && purpose == PATRQT && vm.addr(signerPk) == accessor
            && !ghostErased[patient][r] && version != 0 && version <= head && !ghostNonceUsed[accessor][nonce];
        IConsentLedger.AccessRequest memory q = IConsentLedger.AccessRequest({
            patient: patient,
            accessor: accessor,
            recordId: _records[p][r],
            version: version,
            purpose: purpose,
            nonce: nonce,
            deadline: time
        });
        bytes memory sig = _sign(signerPk, keccak256(abi.encode(ledger.ACCESS_REQUEST_TYPEHASH(), q)));
        vm.prank(outsider);
        try ledger.logAccessBySig(q, sig) returns (bytes32 consentId) {
            if (!expected) ++ghost_logWithoutAuthorization;
            if (consentId != 0) ++ghost_logWrongConsent;
            _spend(accessor, nonce);
            ++patientRequestsLogged;
        } catch {
            if (expected) ++ghost_authorizedLogFailed;
        }
    }

    function logEmergencyAccess(uint256 patientSeed, uint256 recordSeed, uint256 accessorSeed, uint256 nonceSeed)
        external
        useTime("logEmergencyAccess")
    {
        uint256 p = patientSeed % PATIENTS;
        uint256 r = recordSeed % RECORDS;
        uint256 a = accessorSeed % (PROVIDERS + 1);
        (address accessor, uint256 pk) = a == PROVIDERS ? (outsider, _outsiderPk) : (providers[a], _providerPks[a]);
        uint256 nonce = _nonceFor(accessor, nonceSeed);
        bool expected =
            a == 2 && !ghostSuspended[accessor] && !ghostErased[patients[p]][r] && !ghostNonceUsed[accessor][nonce];
        IConsentLedger.EmergencyAccessRequest memory q = IConsentLedger.EmergencyAccessRequest({
            patient: patients[p],
            accessor: accessor,
            recordId: _records[p][r],
            version: ghostVersion[patients[p]][r],
            reasonHash: keccak256("reason"),
            nonce: nonce,
            deadline: time
        });
        bytes memory sig = _sign(pk, keccak256(abi.encode(ledger.EMERGENCY_ACCESS_REQUEST_TYPEHASH(), q)));
        bool ok;
        vm.prank(outsider);
        try ledger.logEmergencyAccessBySig(q, sig) {
            ok = true;
        } catch {}
        if (ok != expected) ++ghost_emergencyMismatch;
        if (ok) _spend(accessor, nonce);
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

    /// @dev The nonces of `signer` the handler used so far are below this bound.
    function nonceTop(address signer) public view returns (uint256) {
        return NONCES + _freshNonces[signer];
    }

    /// @dev The world's signers: patients, delegates, providers, the outsider.
    function signerOf(uint256 i) external view returns (address signer) {
        (signer,) = _signer(i);
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

    function _signer(uint256 seed) internal view returns (address, uint256) {
        uint256 i = seed % SIGNERS;
        if (i < PATIENTS) return (patients[i], _patientPks[i]);
        i -= PATIENTS;
        if (i < DELEGATES) return (delegates[i], _delegatePks[i]);
        i -= DELEGATES;
        if (i < PROVIDERS) return (providers[i], _providerPks[i]);
        return (outsider, _outsiderPk);
    }

    function _countConsentChange(bool ok, bool expected) internal {
        if (ok && !expected) ++ghost_unauthorizedConsentChange;
        if (!ok && expected) ++ghost_authorizedConsentChangeFailed;
    }

    /// @dev Records that a successful signed message spent `nonce` of `signer` (counting a replay if it was spent).
    function _spend(address signer, uint256 nonce) internal {
        if (ghostNonceUsed[signer][nonce]) ++ghost_nonceReplayAccepted;
        ghostNonceUsed[signer][nonce] = true;
    }

    function _consentId(address patient, address grantee, bytes32 scope, bytes32 purpose)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(patient, grantee, scope, purpose));
    }

    function _touch(bytes32 id, ConsentKey memory key) internal {
        if (!_touched[id]) {
            _touched[id] = true;
            _keys[id] = key;
            _touchedConsents.push(id);
        }
    }

    /// @dev The first ghost-active consent from a random index on, or the consent at that index if none is.
    function _someConsent(uint256 seed) internal view returns (bytes32) {
        uint256 n = _touchedConsents.length;
        uint256 start = seed % n;
        for (uint256 i; i < n; ++i) {
            bytes32 id = _touchedConsents[(start + i) % n];
            if (_ghostActive(id)) return id;
        }
        return _touchedConsents[start];
    }

    /// @dev One message in four reuses one of the nonces 0 to NONCES - 1 (maybe spent: a replay), the others
    /// take the signer's next fresh nonce.
    function _nonceFor(address signer, uint256 seed) internal returns (uint256) {
        if (seed % 4 == 0) return (seed >> 2) % NONCES;
        return NONCES + _freshNonces[signer]++;
    }

    function _hashAmend(IConsentLedger.RecordAmend memory a) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                ledger.RECORD_AMEND_TYPEHASH(),
                a.patient,
                a.author,
                a.recordId,
                keccak256(a.cid),
                a.commitment,
                a.previousHash,
                a.nonce,
                a.deadline
            )
        );
    }

    function _sign(uint256 pk, bytes32 structHash) internal view returns (bytes memory) {
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", ledger.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }
}
