// First start only (docker-entrypoint-initdb.d): the services' own user, with rights on their database alone.
db.getSiblingDB("admin").createUser({
  user: process.env.LIENTHONG_MONGO_USER,
  pwd: process.env.LIENTHONG_MONGO_PASSWORD,
  roles: [{ role: "readWrite", db: "lienthong" }],
});
