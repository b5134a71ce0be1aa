/** Absolute path of the bundled cdc.so (pass it to any loadExtension). */
export declare function getLoadablePath(): string;
/** Loads the extension into a connection, e.g. a better-sqlite3 Database. */
export declare function load(db: { loadExtension(path: string): unknown }): void;
declare const _default: { getLoadablePath: typeof getLoadablePath; load: typeof load };
export default _default;
