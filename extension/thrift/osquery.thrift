// The part of osquery's extension protocol that jailer-extension speaks,
// written for ProdNG from the wire format osquery uses (names, field ids
// and types must stay as osquery has them: they are what goes on the wire).
//
// Regenerate src/osquery_thrift.rs with the Apache Thrift compiler 0.17
// (Debian package `thrift-compiler`, matching the `thrift` crate 0.17):
//   thrift --gen rs -out /tmp/gen extension/thrift/osquery.thrift
//   cp /tmp/gen/osquery.rs extension/src/osquery_thrift.rs
// then add the header that src/osquery_thrift.rs starts with.

typedef map<string, string> ExtensionPluginRequest
typedef list<map<string, string>> ExtensionPluginResponse

struct InternalOptionInfo {
  1: string value,
  2: string default_value,
  3: string type,
}
typedef map<string, InternalOptionInfo> InternalOptionList

struct InternalExtensionInfo {
  1: string name,
  2: string version,
  3: string sdk_version,
  4: string min_sdk_version,
}

typedef i64 ExtensionRouteUUID
// plugin name -> its routes (for a table: one map per column)
typedef map<string, ExtensionPluginResponse> ExtensionRouteTable
// registry name ("table", "config", "logger") -> its plugins
typedef map<string, ExtensionRouteTable> ExtensionRegistry
typedef map<ExtensionRouteUUID, InternalExtensionInfo> InternalExtensionList

enum ExtensionCode {
  EXT_SUCCESS = 0,
  EXT_FAILED = 1,
  EXT_FATAL = 2,
}

struct ExtensionStatus {
  1: i32 code,
  2: string message,
  3: ExtensionRouteUUID uuid,
}

struct ExtensionResponse {
  1: ExtensionStatus status,
  2: ExtensionPluginResponse response,
}

exception ExtensionException {
  1: i32 code,
  2: string message,
  3: ExtensionRouteUUID uuid,
}

// What every extension (and the core) serves on its socket.
service Extension {
  ExtensionStatus ping(),
  ExtensionResponse call(1: string registry, 2: string item, 3: ExtensionPluginRequest request),
  void shutdown(),
}

// What the osquery core serves on its extensions socket.
service ExtensionManager extends Extension {
  InternalExtensionList extensions(),
  InternalOptionList options(),
  ExtensionStatus registerExtension(1: InternalExtensionInfo info, 2: ExtensionRegistry registry),
  ExtensionStatus deregisterExtension(1: ExtensionRouteUUID uuid),
  ExtensionResponse query(1: string sql),
  ExtensionResponse getQueryColumns(1: string sql),
}
