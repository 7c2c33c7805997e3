//! Generated host bindings for `sdk/wit` (the one place generated code lives).

wasmtime::component::bindgen!({
    path: "../../sdk/wit",
    world: "source",
    // Host functions return `wasmtime::Result<…>`: an outer error is a host
    // bug and traps the guest; the inner result is what the guest handles.
    imports: { default: trappable },
    additional_derives: [PartialEq],
});
