// A request goes Worker -> Durable Object -> its container (here the Durable Object
// answers itself, so the answer does not depend on the image).
import { DurableObject } from "cloudflare:workers";

export class Shop extends DurableObject {
  async fetch() {
    return new Response(`${this.env.GREETING} (shop)\n`);
  }
}

export default {
  async fetch(request, env) {
    return env.SHOP.get(env.SHOP.idFromName("shop")).fetch(request);
  },
};
