import { parseFlags } from "../config/load-config.js";
import { apiKeyNameProblem, formatApiKeyEntry, generateApiKey, hashApiKey, parseScopes, SCOPES, type Scope } from "./api-keys.js";

const USAGE = [
  "Usage: npm run create-api-key -- --name NAME --scopes SCOPE[+SCOPE...]",
  "",
  "Generates an API key for callers, prints it once, and prints the API_KEYS entry that holds its SHA-256.",
  "",
  "  --name NAME      Name logged on each call made with the key: 1 to 64 letters, digits, '.', '_' or '-'.",
  `  --scopes SCOPES  Scopes separated by '+' or ',': ${SCOPES.join(", ")}.`,
].join("\n");

/** Parsed arguments of the command. */
interface CreateApiKeyArguments {
  name: string;
  scopes: Scope[];
}

/**
 * Runs `npm run create-api-key`: generates a random key and prints it with
 * its configuration entry. The key itself is stored nowhere.
 *
 * @returns the exit code: 0 on success, 2 for invalid arguments.
 */
export function runCreateApiKeyCommand(argv: readonly string[], out: (text: string) => void, err: (text: string) => void): number {
  let parsed: CreateApiKeyArguments | "help";
  try {
    parsed = parseArguments(argv);
  } catch (error) {
    err(`create-api-key: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed === "help") {
    out(USAGE);
    return 0;
  }

  const key = generateApiKey();
  const entry = formatApiKeyEntry(parsed.name, parsed.scopes, hashApiKey(key));
  out(
    [
      `API key "${parsed.name}" with the scopes ${parsed.scopes.join(", ")}. It is printed only this once; give it to the caller:`,
      "",
      `  ${key}`,
      "",
      "Add this entry to API_KEYS (entries separated by commas) or as a line of API_KEYS_FILE, then restart the service:",
      "",
      `  ${entry}`,
    ].join("\n"),
  );
  return 0;
}

function parseArguments(argv: readonly string[]): CreateApiKeyArguments | "help" {
  const values = parseFlags(argv, new Set(["--name", "--scopes"]));
  if (values === "help") {
    return "help";
  }

  const name = values.get("--name");
  const scopes = values.get("--scopes");
  if (name === undefined || scopes === undefined) {
    throw new Error("--name and --scopes are required");
  }
  const nameProblem = apiKeyNameProblem(name);
  if (nameProblem !== null) {
    throw new Error(`--name: ${nameProblem}`);
  }
  return { name, scopes: parseScopes(scopes) };
}
