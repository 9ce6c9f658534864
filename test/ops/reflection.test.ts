import { create, createFileRegistry, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  file_google_protobuf_timestamp,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  type ServerReflectionRequestSchema as ServerReflectionRequestV1alphaSchema,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { DescriptorIndex } from "../../src/server/descriptor-index.js";
import { answer } from "../../src/server/reflection-service.js";
import { startTestService, type TestService } from "../helpers/service.js";

type Request = MessageInitShape<typeof ServerReflectionRequestSchema>;

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});

afterAll(async () => {
  await service.stop();
});

/** Sends the requests on one reflection stream and returns the responses in order. */
async function reflect(version: "v1" | "v1alpha", requests: Request[], transport = "grpc"): Promise<ServerReflectionResponse[]> {
  const baseUrl = service.baseUrl;
  const chosen =
    transport === "grpc" ? createGrpcTransport({ baseUrl }) : createConnectTransport({ baseUrl, httpVersion: "2" });
  const responses: ServerReflectionResponse[] = [];
  if (version === "v1") {
    const client = createClient(ServerReflectionV1, chosen);
    for await (const response of client.serverReflectionInfo(streamOf(requests))) {
      responses.push(response);
    }
  } else {
    const client = createClient(ServerReflectionV1alpha, chosen);
    const alphaRequests = requests as MessageInitShape<typeof ServerReflectionRequestV1alphaSchema>[];
    for await (const response of client.serverReflectionInfo(streamOf(alphaRequests))) {
      // The same fields under the same numbers; read them through v1 for one set of assertions.
      responses.push(response as unknown as ServerReflectionResponse);
    }
  }
  return responses;
}

async function* streamOf<T>(requests: T[]) {
  for (const request of requests) {
    yield request;
  }
}

/** Returns the names of the files in a file descriptor response, in order. */
function fileNames(response: ServerReflectionResponse | undefined): string[] {
  expect(response?.messageResponse.case).toBe("fileDescriptorResponse");
  if (response?.messageResponse.case !== "fileDescriptorResponse") {
    return [];
  }
  return response.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name);
}

function errorOf(response: ServerReflectionResponse | undefined): { code: number; message: string } {
  expect(response?.messageResponse.case).toBe("errorResponse");
  if (response?.messageResponse.case !== "errorResponse") {
    return { code: -1, message: "" };
  }
  return { code: response.messageResponse.value.errorCode, message: response.messageResponse.value.errorMessage };
}

const ALL_SERVICES = [
  "smsgateway.v1.IntegrationService",
  "smsgateway.v1.SmsService",
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
];

describe.each(["v1", "v1alpha"] as const)("reflection %s", (version) => {
  test("lists every service", async () => {
    const [response] = await reflect(version, [{ host: "localhost", messageRequest: { case: "listServices", value: "" } }]);

    expect(response?.validHost).toBe("localhost");
    expect(response?.originalRequest?.messageRequest.case).toBe("listServices");
    expect(response?.messageResponse.case).toBe("listServicesResponse");
    const names = response?.messageResponse.case === "listServicesResponse" ? response.messageResponse.value.service.map((s) => s.name) : [];
    expect(names).toEqual(ALL_SERVICES);
  });

  test("answers symbols with files and imports", async () => {
    const responses = await reflect(version, [
      { messageRequest: { case: "fileContainingSymbol", value: "smsgateway.v1.SmsService" } },
      { messageRequest: { case: "fileContainingSymbol", value: "smsgateway.v1.SmsService.SendSms" } },
      { messageRequest: { case: "fileContainingSymbol", value: "smsgateway.v1.Integration" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.ServingStatus" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.health.v1.HealthCheckResponse.SERVING" } },
      { messageRequest: { case: "fileContainingSymbol", value: "smsgateway.v1.SendSmsRequest.integration_id" } },
      { messageRequest: { case: "fileContainingSymbol", value: "smsgateway.v1.BadRequest" } },
      { messageRequest: { case: "fileContainingSymbol", value: "grpc.reflection.v1alpha.ServerReflection" } },
    ]);

    expect(fileNames(responses[0])).toEqual([
      "smsgateway/v1/sms_service.proto",
      "google/protobuf/any.proto",
      "google/protobuf/struct.proto",
      "google/protobuf/timestamp.proto",
    ]);
    expect(fileNames(responses[1])[0]).toBe("smsgateway/v1/sms_service.proto");
    expect(fileNames(responses[2])[0]).toBe("smsgateway/v1/integration.proto");
    expect(fileNames(responses[3])).toEqual(["grpc/health/v1/health.proto"]);
    expect(fileNames(responses[4])).toEqual(["grpc/health/v1/health.proto"]);
    expect(fileNames(responses[5])[0]).toBe("smsgateway/v1/sms_service.proto");
    expect(fileNames(responses[6])[0]).toBe("smsgateway/v1/errors.proto");
    expect(fileNames(responses[7])).toEqual(["grpc/reflection/v1alpha/reflection.proto"]);
  });

  test("files rebuild into a working registry", async () => {
    const [byName] = await reflect(version, [
      { messageRequest: { case: "fileByFilename", value: "smsgateway/v1/integration_service.proto" } },
    ]);
    const protos =
      byName?.messageResponse.case === "fileDescriptorResponse"
        ? byName.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes))
        : [];

    // The requested file comes first; its imports follow and resolve by name.
    expect(protos[0]?.name).toBe("smsgateway/v1/integration_service.proto");
    // NOTE: createFileRegistry(file, resolve) of protobuf-es 2.13 adds an import before the
    // imports it shares with an earlier sibling, and then fails to find them, so the files go
    // in as a set, ordered so that each follows its imports.
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: importsFirst(protos) }));

    const method = registry.getService("smsgateway.v1.IntegrationService")?.methods.find((m) => m.name === "ConfigureIntegration");
    expect(method?.input.typeName).toBe("smsgateway.v1.ConfigureIntegrationRequest");
    expect(registry.getMessage("smsgateway.v1.Integration")?.fields.map((f) => f.name)).toContain("api_key_header");
    expect(registry.getMessage("google.protobuf.FieldMask")).toBeDefined();
  });

  test("unknown names are NOT_FOUND and the stream goes on", async () => {
    const responses = await reflect(version, [
      { messageRequest: { case: "fileByFilename", value: "nope/v1/missing.proto" } },
      { messageRequest: { case: "fileContainingSymbol", value: "smsgateway.v1.Missing" } },
      { messageRequest: { case: "fileContainingExtension", value: { containingType: "smsgateway.v1.Missing", extensionNumber: 100 } } },
      { messageRequest: { case: "fileContainingExtension", value: { containingType: "smsgateway.v1.Integration", extensionNumber: 100 } } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "smsgateway.v1.Missing" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "smsgateway.v1.Integration" } },
      { messageRequest: { case: undefined } },
      { messageRequest: { case: "listServices", value: "" } },
    ]);

    expect(responses).toHaveLength(8);
    expect(errorOf(responses[0])).toEqual({ code: Code.NotFound, message: 'file "nope/v1/missing.proto" not found' });
    expect(errorOf(responses[1])).toEqual({ code: Code.NotFound, message: 'symbol "smsgateway.v1.Missing" not found' });
    expect(errorOf(responses[2])).toEqual({ code: Code.NotFound, message: 'message type "smsgateway.v1.Missing" not found' });
    expect(errorOf(responses[3]).code).toBe(Code.NotFound);
    expect(errorOf(responses[3]).message).toContain("no extension with field number 100");
    expect(errorOf(responses[4]).code).toBe(Code.NotFound);
    expect(responses[5]?.messageResponse).toEqual({
      case: "allExtensionNumbersResponse",
      value: expect.objectContaining({ baseTypeName: "smsgateway.v1.Integration", extensionNumber: [] }),
    });
    expect(errorOf(responses[6]).code).toBe(Code.InvalidArgument);
    expect(responses[7]?.messageResponse.case).toBe("listServicesResponse");
  });
});

test("reflection works over the Connect protocol too", async () => {
  const [response] = await reflect("v1", [{ messageRequest: { case: "listServices", value: "" } }], "connect");

  expect(response?.messageResponse.case).toBe("listServicesResponse");
});

test("open reflection streams end at shutdown", async () => {
  const own = await startTestService();
  const client = createClient(ServerReflectionV1, createGrpcTransport({ baseUrl: own.baseUrl }));
  let stopClient = () => {};
  const clientDone = new Promise<void>((resolve) => (stopClient = resolve));
  async function* oneRequestThenWait() {
    yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
    await clientDone;
  }
  const responses: ServerReflectionResponse[] = [];
  const stream = (async () => {
    for await (const response of client.serverReflectionInfo(oneRequestThenWait())) {
      responses.push(response);
    }
  })().catch((error: unknown) => error);
  for (let i = 0; i < 1_000 && responses.length === 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }

  // With a grace period far beyond the test timeout, close returns in time
  // only because the stream ends as soon as shutdown begins. The server ends
  // it with UNAVAILABLE and then resets it, since the client never ended its
  // side; connect-node reports that reset as its own error.
  await own.app.close(60_000);
  const ended = await stream;
  stopClient();
  await own.stop();

  expect(responses).toHaveLength(1);
  expect(ended).toBeInstanceOf(ConnectError);
});

describe("DescriptorIndex extensions", () => {
  // A proto2 file with an extension, built in code: the service's own files declare none.
  const extended = createFileRegistry(
    create(FileDescriptorProtoSchema, {
      name: "example/v1/extended.proto",
      package: "example.v1",
      syntax: "proto2",
      dependency: ["google/protobuf/timestamp.proto"],
      messageType: [{ name: "Base", extensionRange: [{ start: 100, end: 200 }] }],
      extension: [
        { name: "note", number: 150, label: 1, type: 9, extendee: ".example.v1.Base" },
        { name: "stamp", number: 120, label: 1, type: 11, typeName: ".google.protobuf.Timestamp", extendee: ".example.v1.Base" },
      ],
    }),
    (name) => (name === file_google_protobuf_timestamp.proto.name ? file_google_protobuf_timestamp : undefined),
  );
  const file = extended.getFile("example/v1/extended.proto");
  const index = new DescriptorIndex([], file === undefined ? [] : [file]);
  const ask = (request: Request) => answer(index, create(ServerReflectionRequestSchema, request));

  test("finds the file of an extension", () => {
    const response = ask({ messageRequest: { case: "fileContainingExtension", value: { containingType: "example.v1.Base", extensionNumber: 150 } } });

    expect(fileNames(response)).toEqual(["example/v1/extended.proto", "google/protobuf/timestamp.proto"]);
  });

  test("lists extension numbers in order", () => {
    const response = ask({ messageRequest: { case: "allExtensionNumbersOfType", value: "example.v1.Base" } });

    expect(response.messageResponse.case).toBe("allExtensionNumbersResponse");
    expect(response.messageResponse.value).toMatchObject({ baseTypeName: "example.v1.Base", extensionNumber: [120, 150] });
  });

  test("finds extensions as symbols", () => {
    expect(fileNames(ask({ messageRequest: { case: "fileContainingSymbol", value: "example.v1.note" } }))[0]).toBe(
      "example/v1/extended.proto",
    );
  });
});

/** Orders files so that each follows the files it imports; an import missing from the list is left for the registry to report. */
function importsFirst(files: readonly FileDescriptorProto[]): FileDescriptorProto[] {
  const byName = new Map(files.map((file) => [file.name, file]));
  const ordered: FileDescriptorProto[] = [];
  const visited = new Set<string>();
  const visit = (file: FileDescriptorProto) => {
    if (visited.has(file.name)) {
      return;
    }
    visited.add(file.name);
    for (const name of file.dependency) {
      const imported = byName.get(name);
      if (imported !== undefined) {
        visit(imported);
      }
    }
    ordered.push(file);
  };
  files.forEach(visit);
  return ordered;
}
