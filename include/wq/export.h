// WQ_API marks what libwqcuda exports. The library is built with hidden visibility
// (-fvisibility=hidden): only the declarations of include/wq/ that carry WQ_API are in its
// dynamic symbol table, so programs cannot come to depend on its internals.
#pragma once

#if defined(__GNUC__) || defined(__clang__)
#define WQ_API __attribute__((visibility("default")))
#else
#define WQ_API
#endif
