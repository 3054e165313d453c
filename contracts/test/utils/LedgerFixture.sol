// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ConsentLedger} from "../../src/ConsentLedger.sol";
import {IConsentLedger} from "../../src/IConsentLedger.sol";
import {Test} from "./Test.sol";

/// @dev Common deployment and helpers: an admin, a custodian, two onboarded providers, a patient, a delegate
/// and a stranger, all with known keys; EIP-712 signing recomputed independently from the type strings.
abstract contract LedgerFixture is Test {
    string internal constant GRANT_TYPE =
        "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)";
    string internal constant REVOKE_TYPE =
        "ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)";
    string internal constant DELEGATE_TYPE =
        "DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)";
    string internal constant DOMAIN_TYPE =
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";

    bytes32 internal constant TREAT = "TREAT";
    bytes32 internal constant HPAYMT = "HPAYMT";
    bytes32 internal constant HOPERAT = "HOPERAT";
    bytes32 internal constant HRESCH = "HRESCH";
    bytes32 internal constant PATRQT = "PATRQT";
    bytes32 internal constant PUBHLTH = "PUBHLTH";
    bytes32 internal constant ETREAT = "ETREAT";

    bytes32 internal constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");
    bytes32 internal constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");
    bytes32 internal constant CUSTODIAN_ROLE = keccak256("CUSTODIAN_ROLE");
    bytes32 internal constant EMERGENCY_ROLE = keccak256("EMERGENCY_ROLE");
    bytes32 internal constant DEFAULT_ADMIN_ROLE = 0x00;

    bytes32 internal constant LABORATORY = keccak256("laboratory");
    bytes32 internal constant IMAGING = keccak256("imaging");
    bytes32 internal constant MEDICATION = keccak256("medication");
    bytes32 internal constant CLINICAL_NOTE = keccak256("clinical-note");

    bytes internal constant CID = hex"01551220c3c4733ec8affd06cf9e9ff50ffc6bcd2ec85a6170004bb709669c31de94391a";
    bytes32 internal constant COMMITMENT = keccak256("document ciphertext");

    uint256 internal constant PATIENT_PK = 0xBA7137;
    uint256 internal constant DELEGATE_PK = 0xDE1E6A7E;
    uint256 internal constant STRANGER_PK = 0x57A4;

    ConsentLedger internal ledger;
    address internal admin;
    address internal custodian;
    address internal provider;
    address internal provider2;
    address internal patient;
    address internal delegate;
    address internal stranger;

    function setUp() public virtual {
        admin = vm.addr(0xAD);
        custodian = vm.addr(0xC0);
        provider = vm.addr(0xD1);
        provider2 = vm.addr(0xD2);
        patient = vm.addr(PATIENT_PK);
        delegate = vm.addr(DELEGATE_PK);
        stranger = vm.addr(STRANGER_PK);
        vm.label(admin, "admin");
        vm.label(custodian, "custodian");
        vm.label(provider, "provider");
        vm.label(provider2, "provider2");
        vm.label(patient, "patient");
        vm.label(delegate, "delegate");
        vm.label(stranger, "stranger");

        ledger = new ConsentLedger(admin);
        vm.label(address(ledger), "ledger");
        vm.startPrank(admin);
        ledger.grantRole(CUSTODIAN_ROLE, custodian);
        ledger.onboardProvider(provider, "General Hospital");
        ledger.onboardProvider(provider2, "Imaging Clinic");
        vm.stopPrank();
    }

    // ------------------------------------------------------------ actions

    function _anchor(address patient_, bytes32 salt) internal returns (bytes32) {
        vm.prank(provider);
        return ledger.anchorRecord(patient_, LABORATORY, salt, CID, COMMITMENT);
    }

    function _grant(address patient_, address grantee, bytes32 scope, bytes32 purpose) internal returns (bytes32) {
        vm.prank(patient_);
        return ledger.grantConsent(patient_, grantee, scope, purpose, 0, 0);
    }

    function _delegate(address patient_, address delegate_, uint64 validUntil) internal {
        vm.prank(patient_);
        ledger.grantDelegate(delegate_, validUntil);
    }

    // ------------------------------------------------------------ EIP-712

    function _domainSeparator(address verifyingContract, uint256 chainId) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(DOMAIN_TYPE)), keccak256("ConsentLedger"), keccak256("1"), chainId, verifyingContract
            )
        );
    }

    function _digest(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _domainSeparator(address(ledger), block.chainid), structHash));
    }

    function _hash(IConsentLedger.ConsentGrant memory g) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256(bytes(GRANT_TYPE)),
                g.patient,
                g.grantee,
                g.scope,
                g.purpose,
                g.validFrom,
                g.validUntil,
                g.nonce,
                g.deadline
            )
        );
    }

    function _hash(IConsentLedger.ConsentRevoke memory r) internal pure returns (bytes32) {
        return keccak256(abi.encode(keccak256(bytes(REVOKE_TYPE)), r.patient, r.consentId, r.nonce, r.deadline));
    }

    function _hash(IConsentLedger.DelegateGrant memory d) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(keccak256(bytes(DELEGATE_TYPE)), d.patient, d.delegate, d.validUntil, d.nonce, d.deadline)
        );
    }

    function _sign(uint256 pk, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signGrant(uint256 pk, IConsentLedger.ConsentGrant memory g) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(g)));
    }

    function _signRevoke(uint256 pk, IConsentLedger.ConsentRevoke memory r) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(r)));
    }

    function _signDelegate(uint256 pk, IConsentLedger.DelegateGrant memory d) internal view returns (bytes memory) {
        return _sign(pk, _digest(_hash(d)));
    }

    /// @dev A grant of `patient_`'s current nonce, to `provider`, all records, TREAT, no window, 1 hour deadline.
    function _grantMsg(address patient_) internal view returns (IConsentLedger.ConsentGrant memory) {
        return IConsentLedger.ConsentGrant({
            patient: patient_,
            grantee: provider,
            scope: bytes32(0),
            purpose: TREAT,
            validFrom: 0,
            validUntil: 0,
            nonce: ledger.nonces(patient_),
            deadline: block.timestamp + 1 hours
        });
    }

    function _revokeMsg(address patient_, bytes32 consentId)
        internal
        view
        returns (IConsentLedger.ConsentRevoke memory)
    {
        return IConsentLedger.ConsentRevoke({
            patient: patient_, consentId: consentId, nonce: ledger.nonces(patient_), deadline: block.timestamp + 1 hours
        });
    }

    function _delegateMsg(address patient_, address delegate_, uint64 validUntil)
        internal
        view
        returns (IConsentLedger.DelegateGrant memory)
    {
        return IConsentLedger.DelegateGrant({
            patient: patient_,
            delegate: delegate_,
            validUntil: validUntil,
            nonce: ledger.nonces(patient_),
            deadline: block.timestamp + 1 hours
        });
    }

    function _consentId(address patient_, address grantee, bytes32 scope, bytes32 purpose)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(patient_, grantee, scope, purpose));
    }

    function _err(bytes4 selector, bytes32 arg) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(selector, arg);
    }
}
