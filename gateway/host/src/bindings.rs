//! Generated host bindings for `sdk/wit` (the one place generated code lives).
//!
//! Four worlds: contract 0.1 (reads); 0.2, which includes 0.1 and adds
//! writes; 0.3, whose counts carry record digests; 0.4, whose rows cross
//! as one buffer. Later versions' bindings reuse the earlier ones for
//! every interface they share, so each host capability is implemented
//! once and serves all four.
//!
//! Calls are async (wasmtime's fibers): a guest runs on the tokio worker
//! that polls its call, and a host capability that waits (a SQL statement,
//! an HTTP request) awaits on that worker instead of holding a blocking
//! thread in `block_on` — no thread hop per call or per statement.

/// `lianqiao:source@0.1.0`: the world every plugin's reads are called through.
pub mod v1 {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit/deps/source-0.1.0",
        world: "source",
        // Host functions return `wasmtime::Result<…>`: an outer error is a
        // host bug and traps the guest; the inner result is what the guest
        // handles.
        imports: {
            "lianqiao:source/sql.query": async | trappable,
            "lianqiao:source/http.send": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        additional_derives: [PartialEq],
    });
}

/// `lianqiao:source@0.2.0`: 0.1 plus `command` and `sql-write`.
pub mod v2 {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "lianqiao:source/source@0.2.0",
        imports: {
            "lianqiao:source/sql-write.transaction": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "lianqiao:source/types@0.1.0": super::v1::lianqiao::source::types,
            "lianqiao:source/sql@0.1.0": super::v1::lianqiao::source::sql,
            "lianqiao:source/http@0.1.0": super::v1::lianqiao::source::http,
            "lianqiao:source/cache@0.1.0": super::v1::lianqiao::source::cache,
            "lianqiao:source/log@0.1.0": super::v1::lianqiao::source::log,
            "lianqiao:source/config@0.1.0": super::v1::lianqiao::source::config,
        },
    });
}

/// `lianqiao:source@0.3.0`: 0.2's imports and exports, with `aggregate`
/// cells that carry the digest of the records they count.
pub mod v3 {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "lianqiao:source/source@0.3.0",
        imports: { default: trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "lianqiao:source/types@0.1.0": super::v1::lianqiao::source::types,
            "lianqiao:source/sql@0.1.0": super::v1::lianqiao::source::sql,
            "lianqiao:source/http@0.1.0": super::v1::lianqiao::source::http,
            "lianqiao:source/cache@0.1.0": super::v1::lianqiao::source::cache,
            "lianqiao:source/log@0.1.0": super::v1::lianqiao::source::log,
            "lianqiao:source/config@0.1.0": super::v1::lianqiao::source::config,
            "lianqiao:source/sql-write@0.2.0": super::v2::lianqiao::source0_2_0::sql_write,
            "lianqiao:source/writes@0.2.0": super::v2::lianqiao::source0_2_0::writes,
        },
    });
}

/// `lianqiao:source@0.4.0`: 0.3's world with rows as one buffer
/// (`sql-rows`, `reads.page`), a `description` and `changes`.
pub mod v4 {
    wasmtime::component::bindgen!({
        path: "../../sdk/wit",
        world: "lianqiao:source/source@0.4.0",
        imports: {
            "lianqiao:source/sql-rows.query": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "lianqiao:source/types@0.1.0": super::v1::lianqiao::source::types,
            "lianqiao:source/sql@0.1.0": super::v1::lianqiao::source::sql,
            "lianqiao:source/http@0.1.0": super::v1::lianqiao::source::http,
            "lianqiao:source/cache@0.1.0": super::v1::lianqiao::source::cache,
            "lianqiao:source/log@0.1.0": super::v1::lianqiao::source::log,
            "lianqiao:source/config@0.1.0": super::v1::lianqiao::source::config,
            "lianqiao:source/sql-write@0.2.0": super::v2::lianqiao::source0_2_0::sql_write,
            "lianqiao:source/writes@0.2.0": super::v2::lianqiao::source0_2_0::writes,
            "lianqiao:source/counting@0.3.0": super::v3::lianqiao::source0_3_0::counting,
        },
    });
}
