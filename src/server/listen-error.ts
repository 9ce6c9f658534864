import { ConfigError } from "../config/load-config.js";
import type { Config } from "../config/settings.js";

/** The settings of the address the service listens on. */
export type ListenSettings = Pick<Config, "host" | "port" | "names">;

/**
 * Returns the start-up error for a failure to listen on HOST and PORT: a
 * ConfigError that names the setting at fault as the operator gave it, and
 * the fix. An error with another code is returned unchanged.
 */
export function listenError(error: unknown, settings: ListenSettings): unknown {
  const { host, port, names } = settings;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case "EADDRINUSE":
      return new ConfigError(
        `${names.port} ${port}: another process already listens on ${host} port ${port} (EADDRINUSE); stop it, ` +
          `or set ${names.port} to a free port (0 picks one).`,
      );
    case "EACCES":
      return new ConfigError(
        `${names.port} ${port}: permission denied to listen on ${host} port ${port} (EACCES); ports below 1024 need ` +
          `root or the CAP_NET_BIND_SERVICE capability, so set ${names.port} to 1024 or higher.`,
      );
    case "EADDRNOTAVAIL":
      return new ConfigError(
        `${names.host} ${host}: not an address of this machine (EADDRNOTAVAIL); set ${names.host} to one of its ` +
          "addresses, 127.0.0.1 for this machine only, or 0.0.0.0 for every interface.",
      );
    case "EAFNOSUPPORT":
      return new ConfigError(
        `${names.host} ${host}: this machine does not support the address family (EAFNOSUPPORT), for example because ` +
          `IPv6 is turned off; set ${names.host} to an IPv4 address such as 127.0.0.1 or 0.0.0.0.`,
      );
    case "ENOTFOUND":
    case "EAI_AGAIN":
    case "EAI_FAIL":
      return new ConfigError(
        `${names.host} ${host}: the host name does not resolve (${code}); set ${names.host} to an IP address of this ` +
          "machine, or a name that resolves to one.",
      );
    default:
      return error;
  }
}
