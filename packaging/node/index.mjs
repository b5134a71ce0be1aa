// ES module entry: the same functions as index.js.
import cjs from './index.js';

export const { getLoadablePath, load } = cjs;
export default cjs;
