/* placeholder: being written */
#include <stddef.h>
extern int popmesh_dnsrrl_placeholder;
