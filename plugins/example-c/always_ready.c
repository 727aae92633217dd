/*
 * always-ready: the smallest useful rollbridge plugin in C, as a starting point.
 *
 * It provides one hook, "health", and reports healthy on every probe. A real
 * plugin would parse the JSON request (any JSON library will do) and look at
 * "options", "process" and "deadlineMs".
 *
 * Build:  cc -shared -fPIC -fvisibility=hidden -I plugins/include -o libalways_ready.so always_ready.c
 * Use:    plugins = { native = { "/path/to/libalways_ready.so" } }
 *         processes[i].health = { check = { plugin = "always-ready" } }
 */
#include <stdlib.h>
#include <string.h>

#include "rollbridge_plugin.h"

static char *always_ready_call(const char *request, size_t request_len, size_t *out_len) {
    (void)request;
    (void)request_len;
    static const char answer[] = "{\"healthy\":true,\"detail\":\"always ready\"}";
    size_t len = sizeof answer - 1;
    /* The host copies the answer and then hands it back to free_response, so
     * any allocator works as long as the two functions agree. */
    char *buffer = malloc(len);
    if (buffer == NULL) {
        return NULL; /* the host reports this call as failed */
    }
    memcpy(buffer, answer, len);
    *out_len = len;
    return buffer;
}

static void always_ready_free(char *response, size_t len) {
    (void)len;
    free(response);
}

static const rollbridge_plugin_v1 descriptor = {
    .abi_version = ROLLBRIDGE_PLUGIN_ABI_VERSION,
    .name = "always-ready",
    .manifest_json = "{\"name\":\"always-ready\",\"hooks\":[\"health\"]}",
    .call = always_ready_call,
    .free_response = always_ready_free,
};

const rollbridge_plugin_v1 *rollbridge_plugin_entry(void) {
    return &descriptor;
}
