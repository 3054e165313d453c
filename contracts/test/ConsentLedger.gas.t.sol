// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {IConsentLedger} from "../src/IConsentLedger.sol";
import {LedgerFixture} from "./utils/LedgerFixture.sol";

/// @dev A state-changing call that does nothing, to tell isolated (per-transaction) gas accounting apart.
contract GasProbe {
    function noop() external {}
}

/// @dev One metered operation per test, so `.gas-snapshot` reads as the gas of that operation (plus the
/// test's constant call overhead). Each test also asserts the transaction gas of the call — its execution gas
/// (`vm.lastCallGas`) plus the 21,000 base and the calldata cost — against the review target (see GAS.md).
contract ConsentLedgerGasTest is LedgerFixture {
    bytes32 internal recordId;
    GasProbe internal probe = new GasProbe();

    function setUp() public override {
        super.setUp();
        recordId = _anchor(patient, "salt");
        // a first signed grant so the patient's nonce is already nonzero (the common case)
        IConsentLedger.ConsentGrant memory g = _grantMsg(patient);
        g.grantee = provider2;
        ledger.grantConsentBySig(g, _signGrant(PATIENT_PK, g));
        vm.prank(admin);
        ledger.grantRole(CUSTODIAN_ROLE, address(this));
        // a record-scoped consent for test_Gas_LogAccessRecordScope
        vm.prank(patient);
        ledger.grantConsent(patient, provider, recordId, TREAT, 0, 0);
    }

    /// @dev Nothing the measured call touches may be read by the test before it (that would warm the slot and
    /// under-report by 2,000 gas per slot), so messages carry literal nonces instead of reading `nonces()`.
    function _grantMsgWithNonce(address patient_, uint256 nonce)
        internal
        view
        returns (IConsentLedger.ConsentGrant memory g)
    {
        g = IConsentLedger.ConsentGrant({
            patient: patient_,
            grantee: provider,
            scope: bytes32(0),
            purpose: TREAT,
            validFrom: 0,
            validUntil: 0,
            nonce: nonce,
            deadline: block.timestamp + 1 hours
        });
    }

    /// @dev Relayed first grant of a (patient, grantee, scope, purpose), patient nonce nonzero.
    function test_Gas_GrantBySig() public {
        vm.pauseGasMetering();
        IConsentLedger.ConsentGrant memory g = _grantMsgWithNonce(patient, 1);
        g.validUntil = uint64(block.timestamp + 365 days);
        bytes memory sig = _signGrant(PATIENT_PK, g);
        vm.prank(stranger);
        vm.resumeGasMetering();
        ledger.grantConsentBySig(g, sig);
        vm.pauseGasMetering();
        // review aim 60,000 is not met (see GAS.md); this guards against regressions
        _checkTxGas(abi.encodeCall(IConsentLedger.grantConsentBySig, (g, sig)), 61_500, "grantConsentBySig");
    }

    /// @dev Relayed first grant while the patient's nonce is still zero (one more zero-to-nonzero write).
    function test_Gas_GrantBySigFirstNonce() public {
        vm.pauseGasMetering();
        address other = vm.addr(0x0123);
        IConsentLedger.ConsentGrant memory g = _grantMsgWithNonce(other, 0);
        bytes memory sig = _signGrant(0x0123, g);
        vm.resumeGasMetering();
        ledger.grantConsentBySig(g, sig);
        vm.pauseGasMetering();
        _checkTxGas(abi.encodeCall(IConsentLedger.grantConsentBySig, (g, sig)), 80_000, "grantConsentBySig, nonce 0");
    }

    function test_Gas_GrantDirect() public {
        vm.prank(patient);
        ledger.grantConsent(patient, provider, bytes32(0), TREAT, 0, 0);
        vm.pauseGasMetering();
        _checkTxGas(
            abi.encodeCall(IConsentLedger.grantConsent, (patient, provider, bytes32(0), TREAT, 0, 0)),
            60_000,
            "grantConsent"
        );
    }

    function test_Gas_RevokeDirect() public {
        vm.pauseGasMetering();
        bytes32 consentId = _consentId(patient, provider2, bytes32(0), TREAT);
        vm.prank(patient);
        vm.resumeGasMetering();
        ledger.revokeConsent(consentId);
        vm.pauseGasMetering();
        _checkTxGas(abi.encodeCall(IConsentLedger.revokeConsent, (consentId)), 35_000, "revokeConsent");
    }

    function test_Gas_RevokeBySig() public {
        vm.pauseGasMetering();
        bytes32 consentId = _consentId(patient, provider2, bytes32(0), TREAT);
        IConsentLedger.ConsentRevoke memory r = IConsentLedger.ConsentRevoke({
            patient: patient, consentId: consentId, nonce: 1, deadline: block.timestamp + 1 hours
        });
        bytes memory sig = _signRevoke(PATIENT_PK, r);
        vm.resumeGasMetering();
        ledger.revokeConsentBySig(r, sig);
        vm.pauseGasMetering();
        _checkTxGas(abi.encodeCall(IConsentLedger.revokeConsentBySig, (r, sig)), 45_000, "revokeConsentBySig");
    }

    function test_Gas_AnchorRecord() public {
        vm.prank(provider);
        ledger.anchorRecord(patient, IMAGING, "salt-2", CID, COMMITMENT);
        vm.pauseGasMetering();
        _checkTxGas(
            abi.encodeCall(IConsentLedger.anchorRecord, (patient, IMAGING, "salt-2", CID, COMMITMENT)),
            80_000,
            "anchorRecord"
        );
    }

    function test_Gas_AmendRecord() public {
        vm.pauseGasMetering();
        bytes32 head = keccak256(
            abi.encode(recordId, uint32(1), patient, provider, LABORATORY, keccak256(CID), COMMITMENT, bytes32(0))
        );
        vm.prank(provider);
        vm.resumeGasMetering();
        ledger.amendRecord(patient, recordId, CID, COMMITMENT, head);
        vm.pauseGasMetering();
        _checkTxGas(
            abi.encodeCall(IConsentLedger.amendRecord, (patient, recordId, CID, COMMITMENT, head)),
            60_000,
            "amendRecord"
        );
    }

    /// @dev Worst case: the consent is the all-records one, found after the record and category lookups.
    function test_Gas_LogAccess() public {
        vm.pauseGasMetering();
        // provider2 holds an all-records TREAT consent (setUp)
        vm.resumeGasMetering();
        ledger.logAccess(patient, recordId, provider2, TREAT);
        vm.pauseGasMetering();
        _checkTxGas(
            abi.encodeCall(IConsentLedger.logAccess, (patient, recordId, provider2, TREAT)), 45_000, "logAccess"
        );
    }

    function test_Gas_LogAccessRecordScope() public {
        ledger.logAccess(patient, recordId, provider, TREAT);
        vm.pauseGasMetering();
        _checkTxGas(
            abi.encodeCall(IConsentLedger.logAccess, (patient, recordId, provider, TREAT)), 45_000, "logAccess (record)"
        );
    }

    function test_Gas_AnchorDisclosureBatch() public {
        ledger.anchorDisclosureBatch(keccak256("root"), 0, 128);
        vm.pauseGasMetering();
        _checkTxGas(
            abi.encodeCall(IConsentLedger.anchorDisclosureBatch, (keccak256("root"), 0, 128)),
            75_000,
            "anchorDisclosureBatch"
        );
    }

    /// @dev Transaction gas of the last call = its execution gas + 21,000 + calldata (4/16 per zero/nonzero
    /// byte). Under `--gas-report`/`--isolate` forge runs each call as its own transaction and `lastCallGas`
    /// already includes the intrinsic part: detected by probing a trivial call, which then costs > 21,000.
    function _checkTxGas(bytes memory callData, uint256 aim, string memory what) internal {
        uint256 txGas = vm.lastCallGas().gasTotalUsed;
        probe.noop();
        if (vm.lastCallGas().gasTotalUsed < 21_000) {
            txGas += 21_000;
            for (uint256 i; i < callData.length; ++i) {
                txGas += callData[i] == 0 ? 4 : 16;
            }
        }
        vm.assertLe(txGas, aim, what);
    }
}
