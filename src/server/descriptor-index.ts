import { toBinary, type DescExtension, type DescFile, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";

/**
 * The protobuf files a server is built from, looked up the ways server
 * reflection requests them: by file name, by fully-qualified symbol, and by
 * extension.
 *
 * It holds the given files and every file they import, directly or not, so
 * a client can rebuild each type from what it receives.
 */
export class DescriptorIndex {
  /** Every known file by name, imports included. */
  private readonly files = new Map<string, DescFile>();
  /** The file that declares each fully-qualified symbol. */
  private readonly symbols = new Map<string, DescFile>();
  private readonly messages = new Map<string, DescMessage>();
  /** Extensions by the full name of the message they extend, then by field number. */
  private readonly extensions = new Map<string, Map<number, DescExtension>>();
  private readonly serialized = new Map<string, Uint8Array>();

  constructor(
    /** Services the server offers, in the order `list_services` returns them. */
    readonly services: readonly DescService[],
    /** Further files to offer, such as the one declaring error detail messages. */
    extraFiles: readonly DescFile[] = [],
  ) {
    for (const file of [...services.map((service) => service.file), ...extraFiles]) {
      this.addFile(file);
    }
  }

  /** Returns a file and all its imports, each serialized as a FileDescriptorProto; undefined for an unknown name. */
  fileByName(name: string): Uint8Array[] | undefined {
    const file = this.files.get(name);
    return file === undefined ? undefined : this.withImports(file);
  }

  /**
   * Returns the file declaring a symbol, with all its imports, serialized.
   * Symbols are packages' services, methods, messages, fields, enums, enum
   * values and extensions, fully qualified without a leading dot.
   */
  fileContainingSymbol(symbol: string): Uint8Array[] | undefined {
    const file = this.symbols.get(symbol.startsWith(".") ? symbol.slice(1) : symbol);
    return file === undefined ? undefined : this.withImports(file);
  }

  /** Returns whether a message type of this name is known. */
  hasMessage(typeName: string): boolean {
    return this.messages.has(typeName);
  }

  /** Returns the file declaring an extension of a message type, with its imports; undefined when there is none. */
  fileContainingExtension(typeName: string, fieldNumber: number): Uint8Array[] | undefined {
    const extension = this.extensions.get(typeName)?.get(fieldNumber);
    return extension === undefined ? undefined : this.withImports(extension.file);
  }

  /** Returns the field numbers of the known extensions of a message type, in ascending order. */
  extensionNumbers(typeName: string): number[] {
    return [...(this.extensions.get(typeName)?.keys() ?? [])].sort((a, b) => a - b);
  }

  private addFile(file: DescFile): void {
    // DescFile.name drops the .proto suffix; reflection uses the full path.
    const path = file.proto.name;
    if (this.files.has(path)) {
      return;
    }
    this.files.set(path, file);
    for (const dependency of file.dependencies) {
      this.addFile(dependency);
    }
    for (const type of nestedTypes(file)) {
      this.symbols.set(type.typeName, file);
      switch (type.kind) {
        case "message":
          this.messages.set(type.typeName, type);
          for (const field of type.fields) {
            this.symbols.set(`${type.typeName}.${field.name}`, file);
          }
          break;
        case "enum":
          // Enum values are scoped like their enum, not inside it.
          for (const value of type.values) {
            this.symbols.set(`${scopeOf(type.typeName)}${value.name}`, file);
          }
          break;
        case "service":
          for (const method of type.methods) {
            this.symbols.set(`${type.typeName}.${method.name}`, file);
          }
          break;
        case "extension": {
          const byNumber = this.extensions.get(type.extendee.typeName) ?? new Map<number, DescExtension>();
          byNumber.set(type.number, type);
          this.extensions.set(type.extendee.typeName, byNumber);
          break;
        }
      }
    }
  }

  /** Serializes a file and its imports, the file first and each import once. */
  private withImports(root: DescFile): Uint8Array[] {
    const ordered: DescFile[] = [];
    const seen = new Set<string>();
    const visit = (file: DescFile) => {
      if (seen.has(file.proto.name)) {
        return;
      }
      seen.add(file.proto.name);
      ordered.push(file);
      file.dependencies.forEach(visit);
    };
    visit(root);
    return ordered.map((file) => this.serialize(file));
  }

  private serialize(file: DescFile): Uint8Array {
    let bytes = this.serialized.get(file.proto.name);
    if (bytes === undefined) {
      bytes = toBinary(FileDescriptorProtoSchema, file.proto);
      this.serialized.set(file.proto.name, bytes);
    }
    return bytes;
  }
}

/** Returns the scope prefix of a full name, `a.b.` for `a.b.C`, or `` at the top level. */
function scopeOf(typeName: string): string {
  const dot = typeName.lastIndexOf(".");
  return dot === -1 ? "" : typeName.slice(0, dot + 1);
}
