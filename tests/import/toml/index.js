export default { fetch(request, env) { return new Response(env.GREETING); } };
