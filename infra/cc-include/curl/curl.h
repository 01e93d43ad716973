/* Empty on purpose. librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> under
 * `#ifdef WITH_OAUTHBEARER_OIDC`, and its generated config.h always defines that macro (0 or 1), so
 * the header is needed even when librdkafka is built without curl, as here (WITH_CURL=0: no
 * OIDC token fetching; the code that would use curl is under `#if WITH_OAUTHBEARER_OIDC`).
 * zig, which `cargo lambda build` compiles C with, does not search the system's multiarch include
 * directory where Debian keeps curl's headers, so .cargo/config.toml puts this directory on
 * C_INCLUDE_PATH instead. */
