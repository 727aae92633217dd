/*
 * rollbridge_plugin.h - the C ABI of rollbridge native plugins.
 *
 * A plugin is a shared library that exports one function,
 * rollbridge_plugin_entry, returning a pointer to a descriptor that stays valid
 * for as long as the library is loaded (a static constant is ideal).
 *
 * Everything except the descriptor travels as UTF-8 JSON text: the host sends a
 * request object to `call` and reads back a response object. See docs/plugins.md
 * for the request and response shapes.
 *
 * Rules a plugin must follow:
 *   - `call` may be invoked from several threads at once; make it thread-safe.
 *   - Return by the request's "deadlineMs". The host stops waiting at the
 *     deadline but cannot interrupt native code, so an overrunning call keeps a
 *     thread busy until it returns.
 *   - Never let an exception, a Rust panic or a longjmp escape `call`: it would
 *     take the whole daemon down. Report failures as {"ok":false,"error":"..."}.
 *   - The code runs inside the daemon process, with the daemon's privileges.
 */
#ifndef ROLLBRIDGE_PLUGIN_H
#define ROLLBRIDGE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The descriptor layout described below. The host refuses any other version. */
#define ROLLBRIDGE_PLUGIN_ABI_VERSION 1u

/* The name of the one symbol a plugin library exports. */
#define ROLLBRIDGE_PLUGIN_ENTRY_SYMBOL "rollbridge_plugin_entry"

/*
 * Handles one request.
 *   request      UTF-8 JSON object, NUL-terminated; valid only during the call.
 *   request_len  its length in bytes, not counting the terminator.
 *   out_len      set it to the length in bytes of the returned response.
 * Returns a buffer holding a UTF-8 JSON object of *out_len bytes (a trailing
 * NUL is allowed but not counted). The host copies it and hands it back through
 * `free_response`. Returning NULL counts as a failed call.
 */
typedef char *(*rollbridge_call_fn)(const char *request, size_t request_len, size_t *out_len);

/* Releases a buffer returned by `call`; `len` is the *out_len it reported. */
typedef void (*rollbridge_free_fn)(char *response, size_t len);

typedef struct rollbridge_plugin_v1 {
    /* Must be ROLLBRIDGE_PLUGIN_ABI_VERSION; always the first field. */
    uint32_t abi_version;
    /* Plugin name used in configs as {plugin = "<name>"}: letters, digits, '-',
     * '_' and '.', at most 64 bytes. NUL-terminated UTF-8. */
    const char *name;
    /* JSON manifest, NUL-terminated, e.g.
     * {"name":"my-plugin","hooks":["drain","health"]}
     * Hook kinds: "quiet", "drain", "stop", "health", "match". "name" is optional
     * but must equal `name` when present. */
    const char *manifest_json;
    rollbridge_call_fn call;
    rollbridge_free_fn free_response;
} rollbridge_plugin_v1;

/* Keeps the entry point exported when the plugin is built with
 * -fvisibility=hidden (recommended, so nothing else leaks into the daemon). */
#if defined(__GNUC__) || defined(__clang__)
#define ROLLBRIDGE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define ROLLBRIDGE_PLUGIN_EXPORT
#endif

/* Every plugin defines this function. */
ROLLBRIDGE_PLUGIN_EXPORT const rollbridge_plugin_v1 *rollbridge_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* ROLLBRIDGE_PLUGIN_H */
