import { greet } from "./greet.js";
export default { fetch() { return new Response(greet()); } };
