import { chmod, copyFile, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { runServiceUntilExit } from "../helpers/service-process.js";
import { hasOpenssl, writeTestCertificate, type CertificateFiles } from "../helpers/test-certificate.js";

describe.skipIf(!hasOpenssl())("TLS files", () => {
  let dir: string;
  let served: CertificateFiles;
  let other: CertificateFiles;
  let unreadableKey: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "smsgateway-tls-files-"));
    served = writeTestCertificate(dir, "served");
    other = writeTestCertificate(dir, "other");
    unreadableKey = path.join(dir, "unreadable-key.pem");
    await copyFile(served.keyFile, unreadableKey);
    // The service may run as another user, which must reach every file but the unreadable one.
    await chmod(dir, 0o755);
    await Promise.all([served.certFile, served.keyFile, other.certFile, other.keyFile].map((file) => chmod(file, 0o644)));
    await chmod(unreadableKey, 0o000);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test.each([
    {
      name: "missing certificate as a flag",
      settings: () => ({ args: ["--tls-cert-file", path.join(dir, "missing.pem"), "--tls-key-file", served.keyFile], env: {} }),
      message: /^smsgateway: --tls-cert-file \S+\/missing\.pem cannot be read: not found \(ENOENT\); expected a PEM certificate chain, readable by the user that runs the service\.\n$/,
    },
    {
      name: "missing key as a variable",
      settings: () => ({ args: [], env: { TLS_CERT_FILE: served.certFile, TLS_KEY_FILE: path.join(dir, "missing.pem") } }),
      message: /^smsgateway: TLS_KEY_FILE \S+\/missing\.pem cannot be read: not found \(ENOENT\); expected a PEM private key/,
    },
    {
      name: "key without read permission",
      unprivileged: true,
      settings: () => ({ args: ["--tls-cert-file", served.certFile, "--tls-key-file", unreadableKey], env: {} }),
      message: /^smsgateway: --tls-key-file \S+\/unreadable-key\.pem cannot be read: permission denied \(EACCES\); expected a PEM private key/,
    },
    {
      name: "folder as the certificate",
      settings: () => ({ args: [], env: { TLS_CERT_FILE: dir, TLS_KEY_FILE: served.keyFile } }),
      message: /^smsgateway: TLS_CERT_FILE \S+ cannot be read: it is a folder, not a file \(EISDIR\)/,
    },
    {
      name: "key as the certificate",
      settings: () => ({ args: ["--tls-cert-file", served.keyFile, "--tls-key-file", served.keyFile], env: {} }),
      message: /^smsgateway: --tls-cert-file \S+\/served-key\.pem is not a PEM certificate chain \(.*\); expected the certificate/,
    },
    {
      name: "certificate as the key",
      settings: () => ({ args: ["--tls-cert-file", served.certFile, "--tls-key-file", served.certFile], env: {} }),
      message: /^smsgateway: --tls-key-file \S+\/served-cert\.pem is not a PEM private key \(.*\); expected an unencrypted key/,
    },
    {
      name: "key of another certificate",
      settings: () => ({ args: ["--tls-cert-file", served.certFile], env: { TLS_KEY_FILE: other.keyFile } }),
      message: /^smsgateway: TLS_KEY_FILE \S+\/other-key\.pem is not the private key of the certificate in --tls-cert-file \S+\/served-cert\.pem/,
    },
  ])("$name exits 2 before opening storage", async ({ settings, unprivileged, message }) => {
    const { args, env } = settings();
    const dataDir = path.join(dir, "data");

    const outcome = await runServiceUntilExit(args, { ...env, DATA_DIR: dataDir }, { unprivileged });

    expect(outcome.stderr).toMatch(message);
    expect(outcome.code).toBe(2);
    await expect(stat(dataDir)).rejects.toMatchObject({ code: "ENOENT" });
  });
});
