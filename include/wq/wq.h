// Umbrella header of libwqcuda.
#pragma once

#include "wq/backend.h"
#include "wq/checkpoint.h"
#include "wq/container.h"
#include "wq/dtype.h"
#include "wq/error.h"
#include "wq/pipeline.h"
#include "wq/quant_spec.h"
#include "wq/atomic_write.h"
#include "wq/tensor.h"
#include "wq/tree.h"
#include "wq/version.h"
