// QR codes drawn in the browser (the vendored qrcode-generator): a patient's ID card shows its share link
// as one, so clinic staff can scan it (docs/architecture.md, "Patient directory").
import qrcode from "../vendor/qrcode.mjs";
import { h } from "./ui.js";

/** A GIF data URL of `text` as a QR code (error correction M, the smallest version that holds it). */
export function qrDataUrl(text, { cellSize = 5, margin = 4 } = {}) {
  const qr = qrcode(0, "M");
  qr.addData(text, "Byte");
  qr.make();
  return qr.createDataURL(cellSize, margin);
}

/** An <img> of `text` as a QR code, with `alt` saying what it is for. */
export function qrImage(text, alt) {
  return h("img.qr-code", { src: qrDataUrl(text), alt });
}

/** Whether this browser can read QR codes from the camera (the Shape Detection API; not in every browser). */
export async function canScan() {
  if (!("BarcodeDetector" in window) || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return false;
  try {
    const formats = await window.BarcodeDetector.getSupportedFormats();
    return formats.includes("qr_code");
  } catch { return false; }
}

/**
 * Read one QR code from the camera into `video`: resolves with its text, or null once `signal` aborts.
 * The camera is stopped either way.
 */
export async function scanOnce(video, signal) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
  try {
    video.srcObject = stream;
    await video.play();
    const detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    while (!signal.aborted) {
      const codes = await detector.detect(video).catch(() => []);
      if (codes.length && codes[0].rawValue) return codes[0].rawValue;
      await new Promise((resolve) => { setTimeout(resolve, 250); });
    }
    return null;
  } finally {
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  }
}
