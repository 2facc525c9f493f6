/* placeholder: being written */
#include <stddef.h>
extern int popmesh_dnsanswer_placeholder;
