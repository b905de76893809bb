// libwqcuda.so's own translation unit. The library's code is the static archive
// wqcuda_internal, linked in whole (host/CMakeLists.txt); a shared library needs a source of
// its own, and this one adds nothing.
#include "wq/wq.h"
