//! Host-side bindings for the `warden:agent` world (generated from `guest-sdk/wit`).

wasmtime::component::bindgen!({
    world: "agent",
    path: "../../guest-sdk/wit",
    imports: {
        "warden:agent/tools.call": async | trappable,
        "warden:agent/model.chat": async | trappable,
        "warden:agent/agents.call": async | trappable,
        "warden:agent/human.ask": async | trappable,
        default: trappable,
    },
    exports: { default: async },
});
