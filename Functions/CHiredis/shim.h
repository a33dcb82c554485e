#ifndef FNHOST_CHIREDIS_SHIM_H
#define FNHOST_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#endif
