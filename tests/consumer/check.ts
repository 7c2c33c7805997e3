// Type-level checks of what openapi-typescript generates from the running
// demo's /openapi.json: compiled with `tsc --noEmit` by `cargo xtask test`.
// A broken expectation is a compile error, and so is an `@ts-expect-error`
// that no longer finds its error (e.g. `division` turned optional).
import type { components, paths } from "../../target/consumer/ts/schema";

// Reads (GET); case writes (POST) below.
type Query<P extends keyof paths> = paths[P] extends { get: { parameters: { query?: infer Q } } } ? NonNullable<Q> : never;
type Header<P extends keyof paths> = paths[P] extends { get: { parameters: { header: infer H } } } ? H : never;
type PostHeader<P extends keyof paths> = paths[P] extends { post: { parameters: { header: infer H } } } ? H : never;
type PostBody<P extends keyof paths> = paths[P] extends { post: { requestBody: { content: { "application/json": infer B } } } } ? B : never;
type Schemas = components["schemas"];

// `division` is required by every list but divisions (which takes
// `division` or `parent`) and by statistics.
export const grids: Query<"/v1/grids"> = { division: "150103", limit: 50 };
// @ts-expect-error division is required
export const gridsWithout: Query<"/v1/grids"> = { limit: 50 };
// @ts-expect-error division is required
export const orgsWithout: Query<"/v1/party-orgs"> = {};
// @ts-expect-error division is required
export const membersWithout: Query<"/v1/members"> = {};
// @ts-expect-error division is required
export const workersWithout: Query<"/v1/workers"> = {};
// @ts-expect-error division is required
export const centresWithout: Query<"/v1/service-centers"> = {};
// @ts-expect-error division is required
export const casesWithout: Query<"/v1/cases"> = {};
// @ts-expect-error division is required
export const statsWithout: Query<"/v1/stats"> = { metric: "members.count" };
export const children: Query<"/v1/divisions"> = { parent: "1501" };

// Filters are typed by the field: an enumerated field takes its values.
export const tiers: Query<"/v1/grids"> = { division: "150103", tier: "small", "households[gte]": 40 };
// @ts-expect-error not a grid tier
export const badTier: Query<"/v1/grids"> = { division: "150103", tier: "huge" };

// X-Purpose is a required header with the declared purposes.
export const purpose: Header<"/v1/grids"> = { "X-Purpose": "case-handling" };
// @ts-expect-error X-Purpose is required
export const noPurpose: Header<"/v1/grids"> = {};
// @ts-expect-error not a declared purpose
export const badPurpose: Header<"/v1/grids"> = { "X-Purpose": "curiosity" };

// Rows, errors and statistics are named types.
export const grid: Schemas["Grid"] = { id: "150103001001001", source: "huimin", tier: "small" };
export const code: Schemas["ErrorCode"] = "unsupported_query";
// @ts-expect-error not an error code
export const notACode: Schemas["ErrorCode"] = "oops";
export const cell: Schemas["StatsCell"] = { division: "150103", key: null, value: 3, suppressed: false };
export const division: Schemas["Division"] = { id: "1501", source: "city-platform", national_code: "150100" };

// Case writes: a typed body, and an Idempotency-Key beside X-Purpose.
export const newCase: PostBody<"/v1/cases"> = { division: "15010300100101", title: "楼道堆放杂物", category: "环境卫生" };
// @ts-expect-error title is required
export const caseWithoutTitle: PostBody<"/v1/cases"> = { division: "15010300100101", category: "环境卫生" };
export const writeHeaders: PostHeader<"/v1/cases"> = { "X-Purpose": "case-handling", "Idempotency-Key": "k-1" };
// @ts-expect-error Idempotency-Key is required on every write
export const writeWithoutKey: PostHeader<"/v1/cases"> = { "X-Purpose": "case-handling" };
export const move: PostBody<"/v1/cases/{id}/transitions"> = { to: "assessed", note: "属实" };
// @ts-expect-error not a case state
export const badMove: PostBody<"/v1/cases/{id}/transitions"> = { to: "vanished" };
export const timeline: Schemas["CaseResponse"]["timeline"] = [{ id: "c.1", source: "huimin", state: "discovered" }];
