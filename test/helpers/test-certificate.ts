import { execFileSync } from "node:child_process";
import path from "node:path";

/** Tests whether the openssl command, which makes the test certificates, is installed. */
export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/** Paths of a PEM certificate and its private key. */
export interface CertificateFiles {
  certFile: string;
  keyFile: string;
}

/**
 * Writes a self-signed P-256 certificate for localhost and 127.0.0.1, valid
 * for one day, and its unencrypted key to `dir`, as `<name>-cert.pem` and
 * `<name>-key.pem`.
 */
export function writeTestCertificate(dir: string, name = "test"): CertificateFiles {
  const certFile = path.join(dir, `${name}-cert.pem`);
  const keyFile = path.join(dir, `${name}-key.pem`);
  execFileSync(
    "openssl",
    [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "1", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { stdio: "ignore" },
  );
  return { certFile, keyFile };
}
