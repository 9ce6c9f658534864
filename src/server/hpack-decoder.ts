import { HUFFMAN_CODE_LENGTHS, STATIC_TABLE } from "./hpack-tables.js";

/** A header block that does not follow RFC 7541; HTTP/2 calls this a COMPRESSION_ERROR. */
export class HpackError extends Error {
  override readonly name = "HpackError";
}

/** One decoded header field, name and value as latin1 text (one character per octet). */
export type HeaderField = readonly [name: string, value: string];

/** Default SETTINGS_HEADER_TABLE_SIZE of HTTP/2, in octets (RFC 9113 section 6.5.2). */
export const DEFAULT_HEADER_TABLE_SIZE = 4096;

/** Extra octets that RFC 7541 section 4.1 counts for each dynamic table entry. */
const ENTRY_OVERHEAD = 32;

/** Largest integer accepted in a representation; larger ones are malformed here. */
const MAX_INTEGER = 2 ** 28;

const HUFFMAN_END_OF_STRING = 256;

/**
 * Decodes HPACK header blocks (RFC 7541) of one direction of one connection,
 * keeping its dynamic table between blocks.
 *
 * It is small on purpose: the one-port server decodes only the first request
 * of a connection to choose the server that handles it.
 */
export class HpackDecoder {
  /** Dynamic table entries, newest first. */
  private readonly entries: [string, string][] = [];
  private tableSize = 0;
  private maxTableSize: number;

  /** @param settingsTableSize SETTINGS_HEADER_TABLE_SIZE that the decoder's side announced. */
  constructor(private readonly settingsTableSize = DEFAULT_HEADER_TABLE_SIZE) {
    this.maxTableSize = settingsTableSize;
  }

  /**
   * Decodes one complete header block (the HEADERS fragment and its
   * CONTINUATION fragments joined, without padding or priority fields).
   *
   * @throws HpackError when the block is malformed.
   */
  decode(block: Uint8Array): HeaderField[] {
    const reader = new BlockReader(block);
    const fields: HeaderField[] = [];

    while (!reader.done()) {
      const first = reader.peek();
      if ((first & 0x80) !== 0) {
        fields.push(this.lookup(reader.integer(7)));
      } else if ((first & 0x40) !== 0) {
        const field = this.literal(reader, 6);
        this.insert(field[0], field[1]);
        fields.push(field);
      } else if ((first & 0x20) !== 0) {
        if (fields.length > 0) {
          throw new HpackError("dynamic table size update after a header field");
        }
        this.resize(reader.integer(5));
      } else {
        // Literal without indexing (0000) and never indexed (0001) decode alike.
        fields.push(this.literal(reader, 4));
      }
    }
    return fields;
  }

  private literal(reader: BlockReader, prefixBits: number): [string, string] {
    const nameIndex = reader.integer(prefixBits);
    const name = nameIndex === 0 ? reader.string() : this.lookup(nameIndex)[0];
    return [name, reader.string()];
  }

  private lookup(index: number): HeaderField {
    if (index === 0) {
      throw new HpackError("header field index 0");
    }
    if (index <= STATIC_TABLE.length) {
      return STATIC_TABLE[index - 1]!;
    }
    const entry = this.entries[index - STATIC_TABLE.length - 1];
    if (entry === undefined) {
      throw new HpackError(`header field index ${index} is beyond the dynamic table`);
    }
    return entry;
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.entries.unshift([name, value]);
    this.tableSize += size;
    this.evictTo(this.maxTableSize);
  }

  private resize(size: number): void {
    if (size > this.settingsTableSize) {
      throw new HpackError(`dynamic table size ${size} exceeds the announced ${this.settingsTableSize}`);
    }
    this.maxTableSize = size;
    this.evictTo(size);
  }

  /** Drops the oldest entries until the table fits `limit`; an entry larger than the limit empties it. */
  private evictTo(limit: number): void {
    while (this.tableSize > limit) {
      const [name, value] = this.entries.pop()!;
      this.tableSize -= name.length + value.length + ENTRY_OVERHEAD;
    }
  }
}

/** A cursor over one header block. */
class BlockReader {
  private offset = 0;

  constructor(private readonly bytes: Uint8Array) {}

  done(): boolean {
    return this.offset >= this.bytes.length;
  }

  peek(): number {
    return this.bytes[this.offset]!;
  }

  /** Reads an integer whose first octet keeps its value in the low `prefixBits` bits (RFC 7541 section 5.1). */
  integer(prefixBits: number): number {
    const prefixMax = (1 << prefixBits) - 1;
    let value = this.byte() & prefixMax;
    if (value < prefixMax) {
      return value;
    }

    let shift = 0;
    for (;;) {
      const next = this.byte();
      value += (next & 0x7f) * 2 ** shift;
      if (value > MAX_INTEGER) {
        throw new HpackError("integer too large");
      }
      if ((next & 0x80) === 0) {
        return value;
      }
      shift += 7;
    }
  }

  /** Reads a string literal, Huffman-coded or raw (RFC 7541 section 5.2). */
  string(): string {
    const huffman = (this.peek() & 0x80) !== 0;
    const length = this.integer(7);
    if (this.offset + length > this.bytes.length) {
      throw new HpackError("string literal runs past the end of the block");
    }
    const raw = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return huffman ? decodeHuffman(raw) : Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString("latin1");
  }

  private byte(): number {
    if (this.done()) {
      throw new HpackError("header block ends inside a representation");
    }
    return this.bytes[this.offset++]!;
  }
}

/**
 * The canonical Huffman code as decoding tables: for each code length, the
 * first code of that length, how many symbols have it, and where they start
 * in `symbols`, which lists the symbols by (length, symbol).
 */
const MAX_CODE_LENGTH = 30;
const firstCode = new Int32Array(MAX_CODE_LENGTH + 1);
const codeCount = new Int32Array(MAX_CODE_LENGTH + 1);
const firstSymbol = new Int32Array(MAX_CODE_LENGTH + 1);
const symbols = new Uint16Array(HUFFMAN_CODE_LENGTHS.length);
{
  for (const length of HUFFMAN_CODE_LENGTHS) {
    codeCount[length]!++;
  }
  let code = 0;
  let index = 0;
  for (let length = 1; length <= MAX_CODE_LENGTH; length++) {
    firstCode[length] = code;
    firstSymbol[length] = index;
    code = (code + codeCount[length]!) << 1;
    index += codeCount[length]!;
  }
  const ordered = HUFFMAN_CODE_LENGTHS.map((length, symbol) => ({ length, symbol }));
  ordered.sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  ordered.forEach(({ symbol }, position) => {
    symbols[position] = symbol;
  });
}

/**
 * Decodes a Huffman-coded string literal bit by bit.
 *
 * @throws HpackError on the end-of-string symbol, on a code longer than 30
 *   bits, or on padding that is longer than 7 bits or not all ones.
 */
export function decodeHuffman(encoded: Uint8Array): string {
  const output: number[] = [];
  let code = 0;
  let length = 0;

  for (const byte of encoded) {
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      length++;
      const offset = code - firstCode[length]!;
      if (offset >= 0 && offset < codeCount[length]!) {
        const symbol = symbols[firstSymbol[length]! + offset]!;
        if (symbol === HUFFMAN_END_OF_STRING) {
          throw new HpackError("Huffman string contains the end-of-string symbol");
        }
        output.push(symbol);
        code = 0;
        length = 0;
      } else if (length === MAX_CODE_LENGTH) {
        throw new HpackError("invalid Huffman code");
      }
    }
  }

  if (length > 7 || code !== (1 << length) - 1) {
    throw new HpackError("invalid Huffman padding");
  }
  return Buffer.from(output).toString("latin1");
}
