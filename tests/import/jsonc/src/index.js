import { DurableObject } from "cloudflare:workers";
export class Shop extends DurableObject {}
export class Room extends DurableObject {}
export default { fetch(request, env) { return new Response(env.GREETING); } };
