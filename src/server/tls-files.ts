import { readFile } from "node:fs/promises";
import tls from "node:tls";

import { ConfigError } from "../config/load-config.js";
import { unreadableFileError } from "../config/path-errors.js";
import type { Config } from "../config/settings.js";

/** PEM certificate chain and private key that the port serves TLS with. */
export interface TlsCredentials {
  cert: Buffer;
  key: Buffer;
}

/** The settings that name the TLS files. */
export type TlsSettings = Pick<Config, "tlsCertFile" | "tlsKeyFile" | "names">;

/**
 * Reads the certificate chain of TLS_CERT_FILE and the private key of
 * TLS_KEY_FILE, and checks that the key belongs to the certificate. The
 * service calls it before it opens storage, so a bad file leaves nothing
 * behind.
 *
 * @returns undefined when neither file is set, which means cleartext.
 * @throws ConfigError naming the setting, the path and the reason when a
 *   file cannot be read, is not PEM, or the key does not match.
 */
export async function readTlsFiles(settings: TlsSettings): Promise<TlsCredentials | undefined> {
  const { tlsCertFile, tlsKeyFile, names } = settings;
  if (tlsCertFile === "" && tlsKeyFile === "") {
    return undefined;
  }

  const cert = await readFile(tlsCertFile).catch((error: unknown) => {
    throw unreadableFileError(names.tlsCertFile, tlsCertFile, error, "a PEM certificate chain");
  });
  const key = await readFile(tlsKeyFile).catch((error: unknown) => {
    throw unreadableFileError(names.tlsKeyFile, tlsKeyFile, error, "a PEM private key");
  });

  checkPem(
    { cert },
    `${names.tlsCertFile} ${tlsCertFile} is not a PEM certificate chain`,
    "expected the certificate, then any intermediate certificates, each in a BEGIN CERTIFICATE block",
  );
  checkPem(
    { key },
    `${names.tlsKeyFile} ${tlsKeyFile} is not a PEM private key`,
    "expected an unencrypted key in a BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY block",
  );
  checkPem(
    { cert, key },
    `${names.tlsKeyFile} ${tlsKeyFile} is not the private key of the certificate in ${names.tlsCertFile} ${tlsCertFile}`,
    "expected the key that the certificate was issued for",
  );
  return { cert, key };
}

/** Builds a TLS context from `options`, and turns OpenSSL's error into a ConfigError of `problem` and `expected`. */
function checkPem(options: tls.SecureContextOptions, problem: string, expected: string): void {
  try {
    tls.createSecureContext(options);
  } catch (error) {
    throw new ConfigError(`${problem} (${(error as Error).message}); ${expected}.`);
  }
}
